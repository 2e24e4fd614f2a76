//! Prometheus metrics of the agent: commands run, by verb and outcome, and their latency.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::runner::{CommandOutput, SlurmError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    verb: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    check: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    verb: String,
}

fn latency_histogram() -> Histogram {
    // 10 ms … ~82 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// How a command ended, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0.
    Ok,
    /// Non-zero exit.
    Failed,
    /// Killed after the timeout.
    Timeout,
    /// Could not be started.
    Error,
}

impl Outcome {
    /// How a run ended.
    pub fn of(result: &Result<CommandOutput, SlurmError>) -> Self {
        match result {
            Ok(out) if out.success() => Self::Ok,
            Ok(_) => Self::Failed,
            Err(SlurmError::Timeout { .. }) => Self::Timeout,
            Err(_) => Self::Error,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }
}

/// The agent's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    checks: Family<CheckLabels, Counter>,
    latency: Family<VerbLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("slurm_maint_agent");
        let calls = Family::<CallLabels, Counter>::default();
        let checks = Family::<CheckLabels, Counter>::default();
        let latency = Family::<VerbLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "commands",
            "Slurm and site commands run, by verb and outcome",
            calls.clone(),
        );
        registry.register(
            "command_duration_seconds",
            "Duration of Slurm and site commands, by verb",
            latency.clone(),
        );
        registry.register(
            "checks",
            "Named health checks run, by check and outcome (passed, failed)",
            checks.clone(),
        );
        Self {
            registry,
            calls,
            checks,
            latency,
        }
    }

    /// Record one command.
    pub fn observe(&self, verb: &str, outcome: Outcome, seconds: f64) {
        self.calls
            .get_or_create(&CallLabels {
                verb: verb.to_string(),
                outcome: outcome.label(),
            })
            .inc();
        self.latency
            .get_or_create(&VerbLabels {
                verb: verb.to_string(),
            })
            .observe(seconds);
    }

    /// Record one named check's verdict.
    pub fn check(&self, check: &str, passed: bool) {
        self.checks
            .get_or_create(&CheckLabels {
                check: check.to_string(),
                outcome: if passed { "passed" } else { "failed" },
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_calls_and_latency() {
        let m = Metrics::new();
        m.observe("scontrol show node", Outcome::Ok, 0.05);
        m.observe("scontrol show node", Outcome::Ok, 0.02);
        m.observe("scancel", Outcome::Failed, 0.01);
        let text = m.encode();
        assert!(
            text.contains(
                r#"slurm_maint_agent_commands_total{verb="scontrol show node",outcome="ok"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"slurm_maint_agent_commands_total{verb="scancel",outcome="failed"} 1"#)
        );
        assert!(
            text.contains(
                r#"slurm_maint_agent_command_duration_seconds_count{verb="scontrol show node"} 2"#
            ),
            "{text}"
        );
    }
}
