//! Named health checks, defined where they run. The agent's checks file (`--checks-file`,
//! YAML or JSON) maps each name to an argv template, a timeout, retries with back-off and
//! what counts as a pass; the controller can only name a check, never give an argv.
//!
//! ```yaml
//! checks:
//!   - name: gpu-ecc
//!     argv: [nvidia-smi, --query-gpu=ecc.errors.uncorrected.volatile.total, --format=csv,noheader]
//!     timeout: 30s
//!     retries: 2
//!     backoff: 5s
//!     passPattern: '\A(0\s*)+\z'
//! ```
//!
//! `{node}` and `{fault}` are replaced inside argv elements (a value never splits an
//! element, and no shell ever sees it); both values are validated names. Without a fault,
//! `{fault}` is `none`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use super::api::CheckReport;
use super::runner::{CommandOutput, SlurmError};
use super::validate;

/// Most checks one file defines.
pub const MAX_CHECKS: usize = 256;
/// Most retries of one check.
pub const MAX_RETRIES: u32 = 10;
/// Longest timeout of one attempt.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Longest pause between attempts (the back-off doubles up to this).
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Bytes of output a report carries: the end of the last attempt's stdout and stderr.
pub const MAX_OUTPUT_TAIL: usize = 1024;
/// Longest pattern, in bytes.
const MAX_PATTERN: usize = 1024;
/// What `{fault}` becomes when the request names no fault.
pub const NO_FAULT: &str = "none";
/// The check `--health-command` defines.
pub const DEFAULT_CHECK: &str = "default";

/// One entry of the checks file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    name: String,
    argv: Vec<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    retries: u32,
    #[serde(default)]
    backoff: Option<String>,
    #[serde(default)]
    pass_pattern: Option<String>,
    #[serde(default)]
    fail_pattern: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    checks: Vec<Entry>,
}

/// A configured check.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    /// Argv template with `{node}` and `{fault}`.
    pub argv: Vec<String>,
    /// Each attempt is killed (with its process group) after this.
    pub timeout: Duration,
    /// Attempts after the first that failed.
    pub retries: u32,
    /// Pause before the first retry; doubled before each next one, up to [`MAX_BACKOFF`].
    pub backoff: Duration,
    /// A pass also needs stdout or stderr to match this.
    pub pass_pattern: Option<Regex>,
    /// Output matching this fails the attempt whatever the exit code (an error signature).
    pub fail_pattern: Option<Regex>,
}

impl Check {
    /// A check that passes on exit 0, with no retries.
    pub fn simple(name: &str, argv: Vec<String>, timeout: Duration) -> Self {
        Self {
            name: name.into(),
            argv,
            timeout,
            retries: 0,
            backoff: Duration::ZERO,
            pass_pattern: None,
            fail_pattern: None,
        }
    }

    /// The argv for `node` and `fault`.
    pub fn argv_for(&self, node: &str, fault: Option<&str>) -> Vec<String> {
        let fault = fault.unwrap_or(NO_FAULT);
        self.argv
            .iter()
            .map(|w| w.replace("{node}", node).replace("{fault}", fault))
            .collect()
    }

    /// Pause before retry `n` (1-based).
    pub fn backoff_before(&self, n: u32) -> Duration {
        let factor = 1u32 << (n.saturating_sub(1)).min(16);
        self.backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }

    /// Whether one attempt's output passes; otherwise why not.
    pub fn judge(&self, out: &CommandOutput) -> Result<(), String> {
        let text = format!("{}{}", out.stdout, out.stderr);
        if let Some(p) = &self.fail_pattern
            && p.is_match(&text)
        {
            return Err(format!("output matches the fail pattern /{}/", p.as_str()));
        }
        if !out.success() {
            return Err(match out.code {
                Some(c) => format!("exit code {c}"),
                None => "killed by a signal".into(),
            });
        }
        if let Some(p) = &self.pass_pattern
            && !p.is_match(&text)
        {
            return Err(format!(
                "exit 0 but the output does not match the pass pattern /{}/",
                p.as_str()
            ));
        }
        Ok(())
    }
}

/// The checks an agent may run, by name.
#[derive(Clone, Debug, Default)]
pub struct Checks {
    by_name: BTreeMap<String, Check>,
}

fn duration(field: &str, value: &Option<String>, default: Duration) -> Result<Duration, String> {
    let Some(v) = value else {
        return Ok(default);
    };
    let d: jiff::SignedDuration = v
        .parse()
        .map_err(|e| format!("{field} {v:?} is not a duration (e.g. 30s, 5m): {e}"))?;
    Duration::try_from(d).map_err(|_| format!("{field} {v:?} must not be negative"))
}

fn pattern(field: &str, value: &Option<String>) -> Result<Option<Regex>, String> {
    let Some(p) = value else { return Ok(None) };
    if p.len() > MAX_PATTERN {
        return Err(format!("{field} is longer than {MAX_PATTERN} bytes"));
    }
    RegexBuilder::new(p)
        .multi_line(true)
        .size_limit(1 << 20)
        .build()
        .map(Some)
        .map_err(|e| format!("{field} /{p}/: {e}"))
}

impl Checks {
    /// Parse a checks file (YAML, or JSON); a timeout left out is `default_timeout`.
    pub fn parse(text: &str, default_timeout: Duration) -> Result<Self, String> {
        let file: File = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if file.checks.len() > MAX_CHECKS {
            return Err(format!(
                "{} checks; at most {MAX_CHECKS}",
                file.checks.len()
            ));
        }
        let mut checks = Self::default();
        for e in file.checks {
            let name = validate::check_name(&e.name)
                .map_err(|err| err.to_string())?
                .to_string();
            let context = |m: String| format!("check {name}: {m}");
            if e.argv.is_empty() || e.argv[0].trim().is_empty() {
                return Err(context("argv is empty".into()));
            }
            if e.argv[0].contains('{') {
                return Err(context(
                    "the program (argv[0]) may not be a placeholder".into(),
                ));
            }
            let timeout = duration("timeout", &e.timeout, default_timeout).map_err(context)?;
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return Err(context(format!(
                    "timeout {timeout:?} must be positive and at most 24h"
                )));
            }
            if e.retries > MAX_RETRIES {
                return Err(context(format!(
                    "retries {} is more than {MAX_RETRIES}",
                    e.retries
                )));
            }
            let backoff =
                duration("backoff", &e.backoff, Duration::from_secs(1)).map_err(context)?;
            if backoff > MAX_BACKOFF {
                return Err(context(format!("backoff {backoff:?} is more than 10m")));
            }
            let check = Check {
                name: name.clone(),
                argv: e.argv,
                timeout,
                retries: e.retries,
                backoff,
                pass_pattern: pattern("passPattern", &e.pass_pattern).map_err(context)?,
                fail_pattern: pattern("failPattern", &e.fail_pattern).map_err(context)?,
            };
            if checks.by_name.insert(name.clone(), check).is_some() {
                return Err(format!("check {name} is defined twice"));
            }
        }
        Ok(checks)
    }

    /// Read and parse a checks file.
    pub fn load(path: &Path, default_timeout: Duration) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text, default_timeout)
    }

    /// Add `check` unless one of that name is defined already.
    pub fn add_if_absent(&mut self, check: Check) {
        self.by_name.entry(check.name.clone()).or_insert(check);
    }

    pub fn get(&self, name: &str) -> Option<&Check> {
        self.by_name.get(name)
    }

    /// Names of the configured checks, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// The last [`MAX_OUTPUT_TAIL`] bytes of `text` (on a character boundary).
pub fn tail(text: &str) -> String {
    let text = text.trim_end();
    if text.len() <= MAX_OUTPUT_TAIL {
        return text.to_string();
    }
    let mut start = text.len() - MAX_OUTPUT_TAIL;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// Run `check` for `node`: attempts until one passes or the retries are spent, pausing
/// with back-off between them. `run` runs one argv with a timeout.
pub async fn run<F, Fut>(check: &Check, node: &str, fault: Option<&str>, mut run: F) -> CheckReport
where
    F: FnMut(Vec<String>, Duration) -> Fut,
    Fut: Future<Output = Result<CommandOutput, SlurmError>>,
{
    let argv = check.argv_for(node, fault);
    let started = Instant::now();
    let mut attempts = 0;
    let (passed, message, output) = loop {
        attempts += 1;
        let (verdict, output) = match run(argv.clone(), check.timeout).await {
            Ok(out) => {
                let text = [out.stdout.trim_end(), out.stderr.trim_end()]
                    .into_iter()
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n");
                (check.judge(&out), tail(&text))
            }
            Err(SlurmError::Timeout { timeout, .. }) => (
                Err(format!(
                    "did not finish within {}s and was killed",
                    timeout.as_secs_f64()
                )),
                String::new(),
            ),
            Err(e) => (Err(e.to_string()), String::new()),
        };
        match verdict {
            Ok(()) => break (true, "passed".to_string(), output),
            Err(why) if attempts > check.retries => break (false, why, output),
            Err(why) => {
                let pause = check.backoff_before(attempts);
                tracing::info!(check = %check.name, node, attempt = attempts, why, pause_ms = pause.as_millis() as u64, "check failed; retrying");
                tokio::time::sleep(pause).await;
            }
        }
    };
    let message = if attempts > 1 {
        format!("{message} (attempt {attempts} of {})", check.retries + 1)
    } else {
        message
    };
    CheckReport {
        name: check.name.clone(),
        passed,
        attempts,
        duration_ms: started.elapsed().as_millis() as u64,
        message,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const FILE: &str = r#"
checks:
  - name: readiness
    argv: [scontrol, show, node, "{node}"]
    timeout: 10s
    retries: 3
    backoff: 2s
    passPattern: 'State=(IDLE|MIXED|ALLOCATED)'
  - name: gpu-diag
    argv: [/usr/bin/dcgmi, diag, -r, "1", "--fault={fault}"]
    failPattern: '\bFail\b'
"#;

    fn out(code: i32, stdout: &str) -> CommandOutput {
        CommandOutput {
            stdout: stdout.into(),
            code: Some(code),
            ..Default::default()
        }
    }

    #[test]
    fn parses_yaml_and_json() {
        let c = Checks::parse(FILE, Duration::from_secs(30)).unwrap();
        assert_eq!(c.names().collect::<Vec<_>>(), ["gpu-diag", "readiness"]);
        let r = c.get("readiness").unwrap();
        assert_eq!(
            (r.timeout, r.retries, r.backoff),
            (Duration::from_secs(10), 3, Duration::from_secs(2))
        );
        let d = c.get("gpu-diag").unwrap();
        assert_eq!(d.timeout, Duration::from_secs(30), "the default timeout");
        assert_eq!(
            d.argv_for("gpu1", Some("HPCGPU-0001-01")),
            [
                "/usr/bin/dcgmi",
                "diag",
                "-r",
                "1",
                "--fault=HPCGPU-0001-01"
            ]
        );
        assert_eq!(d.argv_for("gpu1", None)[4], "--fault=none");
        let json = r#"{"checks": [{"name": "ok", "argv": ["true"], "retries": 1}]}"#;
        assert_eq!(
            Checks::parse(json, Duration::from_secs(5))
                .unwrap()
                .get("ok")
                .unwrap()
                .retries,
            1
        );
    }

    #[test]
    fn refuses_bad_files() {
        let t = Duration::from_secs(30);
        for (text, expect) in [
            ("checks: [{name: 'a b', argv: [true]}]", "contains ' '"),
            ("checks: [{name: '-x', argv: [true]}]", "must not start"),
            ("checks: [{name: a, argv: []}]", "argv is empty"),
            ("checks: [{name: a, argv: ['{node}']}]", "placeholder"),
            (
                "checks: [{name: a, argv: [true], retries: 11}]",
                "more than 10",
            ),
            ("checks: [{name: a, argv: [true], timeout: 0s}]", "positive"),
            (
                "checks: [{name: a, argv: [true], timeout: soon}]",
                "not a duration",
            ),
            (
                "checks: [{name: a, argv: [true], passPattern: '('}]",
                "passPattern",
            ),
            (
                "checks: [{name: a, argv: [true]}, {name: a, argv: [false]}]",
                "twice",
            ),
            (
                "checks: [{name: a, argv: [true], shell: yes}]",
                "unknown field",
            ),
        ] {
            let e = Checks::parse(text, t).unwrap_err();
            assert!(e.contains(expect), "{text}: {e}");
        }
    }

    #[test]
    fn judges_exit_code_and_patterns() {
        let c = Checks::parse(FILE, Duration::from_secs(30)).unwrap();
        let r = c.get("readiness").unwrap();
        assert!(r.judge(&out(0, "NodeName=n1 State=IDLE ")).is_ok());
        assert!(
            r.judge(&out(0, "NodeName=n1 State=DOWN+NOT_RESPONDING"))
                .unwrap_err()
                .contains("does not match the pass pattern")
        );
        assert_eq!(r.judge(&out(1, "State=IDLE")).unwrap_err(), "exit code 1");
        let d = c.get("gpu-diag").unwrap();
        assert!(
            d.judge(&out(0, "| Memory | Fail |"))
                .unwrap_err()
                .contains("fail pattern")
        );
        assert!(d.judge(&out(0, "| Memory | Pass |")).is_ok());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut c = Check::simple("x", vec!["true".into()], Duration::from_secs(1));
        c.backoff = Duration::from_secs(2);
        let pauses: Vec<u64> = (1..=4).map(|n| c.backoff_before(n).as_secs()).collect();
        assert_eq!(pauses, [2, 4, 8, 16]);
        c.backoff = Duration::from_secs(300);
        assert_eq!(c.backoff_before(5), MAX_BACKOFF);
    }

    #[test]
    fn tail_keeps_the_end_on_a_character_boundary() {
        let long = format!("{}é{}", "a".repeat(2000), "b".repeat(MAX_OUTPUT_TAIL - 1));
        let t = tail(&long);
        assert!(t.len() <= MAX_OUTPUT_TAIL && t.ends_with('b'));
        assert_eq!(tail("short\n"), "short");
    }

    #[tokio::test]
    async fn retries_until_a_pass() {
        let mut c = Check::simple(
            "flaky",
            vec!["x".into(), "{node}".into()],
            Duration::from_secs(5),
        );
        c.retries = 3;
        c.backoff = Duration::from_millis(10);
        let seen = Mutex::new(vec![]);
        let report = run(&c, "n1", None, |argv, timeout| {
            let mut s = seen.lock().unwrap();
            s.push((argv, timeout));
            let n = s.len();
            async move { Ok(out(if n < 3 { 1 } else { 0 }, &format!("try {n}"))) }
        })
        .await;
        assert!(report.passed, "{report:?}");
        assert_eq!(report.attempts, 3);
        assert_eq!(report.output, "try 3");
        assert_eq!(report.message, "passed (attempt 3 of 4)");
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen[0].0, ["x", "n1"]);
        assert_eq!(seen[0].1, Duration::from_secs(5));

        c.retries = 1;
        let report = run(&c, "n1", None, |_, _| async { Ok(out(2, "broken")) }).await;
        assert!(!report.passed);
        assert_eq!(report.attempts, 2);
        assert_eq!(report.message, "exit code 2 (attempt 2 of 2)");
    }
}
