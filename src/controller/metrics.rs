//! Prometheus metrics of the controller (`/metrics`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use jiff::Timestamp;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::policy::MaintenancePolicyStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: &'static str,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    namespace: String,
    policy: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    namespace: String,
    policy: String,
    partition: String,
    figure: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    namespace: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    verb: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    namespace: String,
    policy: String,
    check: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OciCallLabels {
    verb: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OciEventLabels {
    namespace: String,
    policy: String,
    state: &'static str,
    approved: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OciEventDueLabels {
    namespace: String,
    policy: String,
    event: String,
}

/// OCI event lifecycle states, as the API names them.
pub const OCI_STATES: [&str; 6] = [
    "SCHEDULED",
    "STARTED",
    "PROCESSING",
    "SUCCEEDED",
    "FAILED",
    "CANCELED",
];

fn duration_histogram() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The controller's registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    nodes: Family<PhaseLabels, Gauge>,
    budget: Family<BudgetLabels, Gauge>,
    completion: Family<PolicyLabels, Gauge<f64, AtomicU64>>,
    eta: Family<PolicyLabels, Gauge>,
    slurm_calls: Family<CallLabels, Counter>,
    slurm_latency: Family<CallLabels, Histogram, fn() -> Histogram>,
    oci_calls: Family<OciCallLabels, Counter>,
    health_checks: Family<CheckLabels, Counter>,
    webhook_calls: Family<WebhookLabels, Counter>,
    oci_latency: Family<OciCallLabels, Histogram, fn() -> Histogram>,
    oci_events: Family<OciEventLabels, Gauge>,
    oci_hard_due: Family<OciEventDueLabels, Gauge>,
    /// Events of each `(namespace, policy)` with an `oci_hard_due` series.
    oci_due_events: Mutex<BTreeMap<(String, String), BTreeSet<String>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("slurm_maint");
        let reconciles = Family::default();
        let errors = Family::default();
        let duration = Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        let nodes = Family::default();
        let budget = Family::default();
        let completion = Family::default();
        let eta = Family::default();
        let slurm_calls = Family::default();
        let slurm_latency = Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        let oci_calls = Family::default();
        let health_checks = Family::default();
        let webhook_calls = Family::default();
        let oci_latency = Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        let oci_events = Family::default();
        let oci_hard_due = Family::default();
        registry.register(
            "health_checks",
            "Named health checks run, by policy, check and outcome (passed, failed, error)",
            health_checks.clone(),
        );
        registry.register(
            "health_webhook_calls",
            "Webhook calls for failed health checks, by outcome (sent, failed)",
            webhook_calls.clone(),
        );
        registry.register(
            "oci_calls",
            "Calls to the OCI API (each attempt), by verb and outcome",
            oci_calls.clone(),
        );
        registry.register(
            "oci_call_duration_seconds",
            "Latency of calls to the OCI API",
            oci_latency.clone(),
        );
        registry.register(
            "oci_events",
            "Mirrored OCI maintenance events by lifecycle state and approval",
            oci_events.clone(),
        );
        registry.register(
            "oci_event_hard_due_timestamp_seconds",
            "Hard due date (Unix time) of each mirrored OCI maintenance event not yet in a final lifecycle state",
            oci_hard_due.clone(),
        );
        registry.register(
            "reconciles",
            "Reconcile passes, by controller",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconcile passes, by controller and error",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconcile passes",
            duration.clone(),
        );
        registry.register(
            "nodes",
            "NodeMaintenances by policy and phase",
            nodes.clone(),
        );
        registry.register(
            "budget_nodes",
            "Capacity budget per policy and partition: allowed, unavailable, down, combined, overlap",
            budget.clone(),
        );
        registry.register(
            "campaign_completion_ratio",
            "Share of the campaign's nodes completed",
            completion.clone(),
        );
        registry.register(
            "campaign_eta_timestamp_seconds",
            "Estimated end of the campaign (Unix time)",
            eta.clone(),
        );
        registry.register(
            "slurm_calls",
            "Calls to Slurm through the agent, by verb and outcome",
            slurm_calls.clone(),
        );
        registry.register(
            "slurm_call_duration_seconds",
            "Latency of calls to Slurm through the agent",
            slurm_latency.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            nodes,
            budget,
            completion,
            eta,
            slurm_calls,
            slurm_latency,
            oci_calls,
            health_checks,
            webhook_calls,
            oci_latency,
            oci_events,
            oci_hard_due,
            oci_due_events: Mutex::default(),
        }
    }
}

impl Metrics {
    /// One pass of `controller` took `secs`; `error` is its error label, if it failed.
    pub fn reconciled(&self, controller: &'static str, secs: f64, error: Option<&'static str>) {
        let l = ControllerLabels { controller };
        self.reconciles.get_or_create(&l).inc();
        self.duration.get_or_create(&l).observe(secs);
        if let Some(error) = error {
            self.errors
                .get_or_create(&ErrorLabels { controller, error })
                .inc();
        }
    }

    /// A call to Slurm.
    pub fn slurm_call(&self, verb: &'static str, outcome: &'static str, secs: f64) {
        let l = CallLabels { verb, outcome };
        self.slurm_calls.get_or_create(&l).inc();
        self.slurm_latency.get_or_create(&l).observe(secs);
    }

    /// A named health check's outcome: `passed`, `failed`, or `error` (it did not run).
    pub fn health_check(&self, namespace: &str, policy: &str, check: &str, outcome: &'static str) {
        self.health_checks
            .get_or_create(&CheckLabels {
                namespace: namespace.into(),
                policy: policy.into(),
                check: check.into(),
                outcome,
            })
            .inc();
    }

    /// A webhook call for a failed check, after its retries: `sent` or `failed`.
    pub fn health_webhook(&self, outcome: &'static str) {
        self.webhook_calls
            .get_or_create(&WebhookLabels { outcome })
            .inc();
    }

    /// A call to OCI.
    pub fn oci_call(&self, verb: &str, outcome: &str, secs: f64) {
        let l = OciCallLabels {
            verb: verb.into(),
            outcome: outcome.into(),
        };
        self.oci_calls.get_or_create(&l).inc();
        self.oci_latency.get_or_create(&l).observe(secs);
    }

    /// Mirrored events of a policy: `(lifecycle state, approved)` of each.
    pub fn oci_events<'a>(
        &self,
        namespace: &str,
        policy: &str,
        events: impl Iterator<Item = (&'a str, bool)>,
    ) {
        let mut counts = std::collections::BTreeMap::new();
        for (state, approved) in events {
            *counts.entry((state, approved)).or_insert(0i64) += 1;
        }
        for state in OCI_STATES {
            for approved in [true, false] {
                self.oci_events
                    .get_or_create(&OciEventLabels {
                        namespace: namespace.into(),
                        policy: policy.into(),
                        state,
                        approved: if approved { "true" } else { "false" },
                    })
                    .set(counts.get(&(state, approved)).copied().unwrap_or(0));
            }
        }
    }

    /// Hard due dates of a policy's unfinished OCI events, by event (resource) name; the
    /// series of events no longer given are dropped.
    pub fn oci_hard_due_dates(
        &self,
        namespace: &str,
        policy: &str,
        events: impl Iterator<Item = (String, Timestamp)>,
    ) {
        let labels = |event: &str| OciEventDueLabels {
            namespace: namespace.into(),
            policy: policy.into(),
            event: event.into(),
        };
        let mut now = BTreeSet::new();
        for (event, due) in events {
            self.oci_hard_due
                .get_or_create(&labels(&event))
                .set(due.as_second());
            now.insert(event);
        }
        let mut seen = self.oci_due_events.lock().expect("lock");
        let key = (namespace.to_string(), policy.to_string());
        for gone in seen
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|e| !now.contains(*e))
        {
            self.oci_hard_due.remove(&labels(gone));
        }
        if now.is_empty() {
            seen.remove(&key);
        } else {
            seen.insert(key, now);
        }
    }

    /// The figures of a policy status just written.
    pub fn policy(&self, namespace: &str, policy: &str, status: &MaintenancePolicyStatus) {
        let p = |phase| PhaseLabels {
            namespace: namespace.into(),
            policy: policy.into(),
            phase,
        };
        let ph = &status.phases;
        for (phase, n) in [
            ("Pending", ph.pending),
            ("Reserved", ph.reserved),
            ("PendingReboot", ph.pending_reboot),
            ("Rebooting", ph.rebooting),
            ("Recovering", ph.recovering),
            ("HealthCheck", ph.health_check),
            ("Completed", ph.completed),
            ("Failed", ph.failed),
        ] {
            self.nodes.get_or_create(&p(phase)).set(n as i64);
        }
        if let Some(b) = &status.budget {
            for (figure, n) in [
                ("total", b.total),
                ("allowed", b.allowed),
                ("unavailable", b.unavailable),
                ("down", b.down),
                ("combined", b.combined),
                ("overlap", b.overlap),
                ("committed", b.committed),
                ("peak", b.peak),
            ] {
                self.budget
                    .get_or_create(&BudgetLabels {
                        namespace: namespace.into(),
                        policy: policy.into(),
                        partition: b.partition.clone(),
                        figure,
                    })
                    .set(n as i64);
            }
        }
        let pl = PolicyLabels {
            namespace: namespace.into(),
            policy: policy.into(),
        };
        let ratio = if status.nodes_needing_work == 0 {
            1.0
        } else {
            ph.completed as f64 / status.nodes_needing_work as f64
        };
        self.completion.get_or_create(&pl).set(ratio);
        self.eta
            .get_or_create(&pl)
            .set(status.eta.map_or(0, |t| t.as_second()));
    }

    /// Drop the series of a deleted policy.
    pub fn forget(&self, namespace: &str, policy: &str, partition: &str) {
        for phase in [
            "Pending",
            "Reserved",
            "PendingReboot",
            "Rebooting",
            "Recovering",
            "HealthCheck",
            "Completed",
            "Failed",
        ] {
            self.nodes.remove(&PhaseLabels {
                namespace: namespace.into(),
                policy: policy.into(),
                phase,
            });
        }
        for figure in [
            "total",
            "allowed",
            "unavailable",
            "down",
            "combined",
            "overlap",
            "committed",
            "peak",
        ] {
            self.budget.remove(&BudgetLabels {
                namespace: namespace.into(),
                policy: policy.into(),
                partition: partition.into(),
                figure,
            });
        }
        let pl = PolicyLabels {
            namespace: namespace.into(),
            policy: policy.into(),
        };
        self.completion.remove(&pl);
        self.eta.remove(&pl);
        self.oci_hard_due_dates(namespace, policy, std::iter::empty());
    }

    /// Prometheus text exposition.
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
    use crate::api::policy::BudgetStatus;

    #[test]
    fn policy_series_appear_and_are_forgotten() {
        let m = Metrics::default();
        let mut st = MaintenancePolicyStatus {
            nodes_needing_work: 4,
            budget: Some(BudgetStatus {
                partition: "batch".into(),
                total: 40,
                allowed: 4,
                ..Default::default()
            }),
            ..Default::default()
        };
        st.phases.completed = 1;
        m.policy("ns", "p", &st);
        m.reconciled("policy", 0.01, Some("kube"));
        let text = m.encode();
        for series in [
            "slurm_maint_nodes{namespace=\"ns\",policy=\"p\",phase=\"Completed\"} 1",
            "slurm_maint_budget_nodes{namespace=\"ns\",policy=\"p\",partition=\"batch\",figure=\"allowed\"} 4",
            "slurm_maint_campaign_completion_ratio{namespace=\"ns\",policy=\"p\"} 0.25",
            "slurm_maint_reconcile_errors_total{controller=\"policy\",error=\"kube\"} 1",
        ] {
            assert!(text.contains(series), "no {series} in\n{text}");
        }
        m.forget("ns", "p", "batch");
        assert!(!m.encode().contains("policy=\"p\""));
    }

    #[test]
    fn hard_due_dates_follow_the_unfinished_events() {
        let m = Metrics::default();
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        m.oci_hard_due_dates(
            "ns",
            "p",
            [
                ("ome-a".to_string(), t("2026-12-20T00:00:00Z")),
                ("ome-b".to_string(), t("2026-12-21T00:00:00Z")),
            ]
            .into_iter(),
        );
        let a = "slurm_maint_oci_event_hard_due_timestamp_seconds{namespace=\"ns\",policy=\"p\",event=\"ome-a\"} 1797724800";
        let b = "event=\"ome-b\"";
        let text = m.encode();
        assert!(text.contains(a) && text.contains(b), "{text}");
        m.oci_hard_due_dates(
            "ns",
            "p",
            [("ome-b".to_string(), t("2026-12-21T00:00:00Z"))].into_iter(),
        );
        let text = m.encode();
        assert!(!text.contains("ome-a") && text.contains(b), "{text}");
        m.forget("ns", "p", "batch");
        assert!(!m.encode().contains("ome-b"));
    }
}
