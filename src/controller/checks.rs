//! Named health checks (`spec.healthChecks`) for work in HealthCheck: the policy chooses
//! them by kind of work and fault, the agent runs them, and their results go to the
//! planner (which records them on the work's status and decides). A failed check gets a
//! Warning Event, a metric, and (once, when its work fails) the policy's webhook.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::Context;
use super::write::{publish, truncate};
use crate::agent::api::CheckReport;
use crate::agent::validate::boring_text;
use crate::api::node_maintenance::{
    HealthCheckResult, NodeMaintenancePhase as Phase, NodeMaintenanceStatus,
};
use crate::api::policy::Webhook;
use crate::api::{MaintenancePolicy, NodeMaintenance};
use crate::plan::{HealthResult, Work};
use crate::slurm::Node;
use crate::slurm::client::{SlurmClient, SlurmError};

/// Attempts of one webhook call (back-off 1 s, 2 s, 4 s between them).
pub const WEBHOOK_ATTEMPTS: u32 = 4;
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// A status entry from the agent's report.
fn result_of(r: CheckReport, fault: Option<&str>, now: Timestamp) -> HealthCheckResult {
    HealthCheckResult {
        name: r.name,
        fault: fault.map(String::from),
        passed: r.passed,
        attempts: r.attempts,
        duration_ms: r.duration_ms,
        message: truncate(&r.message, 500),
        output: crate::agent::checks::tail(&r.output),
        time: now,
    }
}

/// Results recorded in this HealthCheck phase, all passed, for exactly these checks: a
/// node settling after its checks is not checked again each pass.
fn passed_already(status: &NodeMaintenanceStatus, checks: &[String]) -> bool {
    let Some(since) = status.phase_since else {
        return false;
    };
    let r = &status.health_checks;
    r.len() == checks.len()
        && r.iter()
            .zip(checks)
            .all(|(r, c)| &r.name == c && r.passed && r.time >= since)
}

/// Run the checks `spec.healthChecks` chooses for every work in HealthCheck whose node answers Slurm, in
/// order, stopping at the first failure. A check the agent could not run (unreachable,
/// Slurm down) leaves its node waiting for the next pass; one it refused (a name its
/// checks file does not define) fails.
pub async fn run(
    ctx: &Context,
    slurm: &dyn SlurmClient,
    policy: &MaintenancePolicy,
    objects: &BTreeMap<String, NodeMaintenance>,
    work: &[Work],
    nodes: &[Node],
    now: Timestamp,
) -> BTreeMap<String, HealthResult> {
    let (ns, name) = (policy.namespace().unwrap_or_default(), policy.name_any());
    let mut health = BTreeMap::new();
    let Some(checks) = &policy.spec.health_checks else {
        return health;
    };
    for w in work.iter().filter(|w| w.status.phase == Phase::HealthCheck) {
        let Some(nm) = objects.get(&w.name) else {
            continue;
        };
        let (faults, category) = nm
            .spec
            .oci_event
            .as_ref()
            .map(|e| (e.fault_ids.clone(), e.category.clone()))
            .unwrap_or_default();
        let selection = checks.select(w.action, &faults, category.as_deref());
        if passed_already(&w.status, &selection.checks) {
            health.insert(
                w.node.clone(),
                HealthResult {
                    healthy: true,
                    message: "health checks passed".into(),
                    checks: w.status.health_checks.clone(),
                },
            );
            continue;
        }
        // OCI work waits for a node that does not answer yet (the planner's rule).
        let answers = nodes.iter().find(|n| n.name == w.node).is_some_and(|n| {
            n.state.base != "DOWN" && !n.state.has("NOT_RESPONDING") && !n.state.is_rebooting()
        });
        if !answers {
            continue;
        }
        let fault = selection.fault.as_deref();
        let mut results = vec![];
        let mut incomplete = false;
        for check in &selection.checks {
            let t = Instant::now();
            let r = slurm.run_check(&w.node, check, fault).await;
            let r = match r {
                Ok(report) => result_of(report, fault, now),
                Err(e @ SlurmError::Refused { .. }) => HealthCheckResult {
                    name: check.clone(),
                    fault: fault.map(String::from),
                    passed: false,
                    attempts: 0,
                    duration_ms: t.elapsed().as_millis() as u64,
                    message: truncate(&e.to_string(), 500),
                    output: String::new(),
                    time: now,
                },
                Err(e) => {
                    tracing::warn!(node = %w.node, check, error = %e, "health check could not run");
                    ctx.metrics.health_check(&ns, &name, check, "error");
                    incomplete = true;
                    break;
                }
            };
            let passed = r.passed;
            ctx.metrics
                .health_check(&ns, &name, check, if passed { "passed" } else { "failed" });
            tracing::info!(node = %w.node, check, fault, passed, attempts = r.attempts, duration_ms = r.duration_ms, message = %r.message, "health check");
            if !passed {
                publish(
                    ctx,
                    &nm.object_ref(&()),
                    EventType::Warning,
                    "HealthCheckFailed",
                    "HealthCheck",
                    format!(
                        "check {check} failed on {}{}: {} (output: {})",
                        w.node,
                        fault.map(|f| format!(" for fault {f}")).unwrap_or_default(),
                        r.message,
                        truncate(&r.output, 300)
                    ),
                )
                .await;
            }
            results.push(r);
            if !passed {
                break;
            }
        }
        if incomplete {
            continue;
        }
        let failed = results.iter().find(|r| !r.passed);
        let message = match failed {
            None if results.is_empty() => "no health checks chosen for this work".into(),
            None => format!(
                "health checks passed: {}",
                results
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(f) => boring_text(
                &format!(
                    "check {}{} failed: {}",
                    f.name,
                    f.fault
                        .as_deref()
                        .map(|x| format!(" (fault {x})"))
                        .unwrap_or_default(),
                    f.message
                ),
                170,
            ),
        };
        health.insert(
            w.node.clone(),
            HealthResult {
                healthy: failed.is_none(),
                message,
                checks: results,
            },
        );
    }
    health
}

/// The failed check that ended work `Failed` in this update: it left HealthCheck now,
/// with a check failed in that phase.
pub fn failure<'a>(
    before: &NodeMaintenanceStatus,
    after: &'a NodeMaintenanceStatus,
) -> Option<&'a HealthCheckResult> {
    if before.phase != Phase::HealthCheck || after.phase != Phase::Failed {
        return None;
    }
    let since = before.phase_since?;
    after
        .health_checks
        .iter()
        .find(|r| !r.passed && r.time >= since)
}

/// The webhook's URL from its Secret.
pub async fn webhook_url(
    ctx: &Context,
    policy: &MaintenancePolicy,
    hook: &Webhook,
) -> Result<String, String> {
    let ns = policy.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = secrets
        .get_opt(&hook.secret_name)
        .await
        .map_err(|e| format!("Secret {ns}/{}: {e}", hook.secret_name))?
        .ok_or_else(|| format!("Secret {ns}/{} not found", hook.secret_name))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&hook.key))
        .map(|b| b.0.clone())
        .ok_or_else(|| format!("Secret {ns}/{} has no key {:?}", hook.secret_name, hook.key))?;
    let url = String::from_utf8(bytes)
        .map_err(|_| {
            format!(
                "Secret {ns}/{} key {:?} is not UTF-8",
                hook.secret_name, hook.key
            )
        })?
        .trim()
        .to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "Secret {ns}/{} key {:?} is not an http(s) URL",
            hook.secret_name, hook.key
        ));
    }
    Ok(url)
}

fn http_client() -> Result<reqwest::Client, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_platform_verifier()
        .map_err(|e| format!("system certificate roots: {e}"))?
        .with_no_client_auth();
    reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| e.to_string())
}

/// Tell the webhook about a failed check (retried with back-off on connection errors,
/// 429 and 5xx); what became of it, for the work's status. The URL is never logged or
/// recorded (it may carry a credential).
pub async fn notify(
    ctx: &Context,
    policy: &MaintenancePolicy,
    nm: &NodeMaintenance,
    failed: &HealthCheckResult,
    url: Result<&str, &str>,
) -> String {
    let url = match url {
        Ok(u) => u,
        Err(e) => {
            ctx.metrics.health_webhook("failed");
            return truncate(&format!("webhook not called: {e}"), 500);
        }
    };
    let body = json!({
        "policy": policy.name_any(),
        "namespace": policy.namespace(),
        "work": nm.name_any(),
        "node": nm.spec.node_name,
        "fault": failed.fault,
        "check": failed.name,
        "message": failed.message,
        "output": failed.output,
        "time": failed.time,
    });
    let outcome = match http_client() {
        Err(e) => Err(e),
        Ok(http) => {
            let mut last = String::new();
            let mut sent = None;
            for attempt in 1..=WEBHOOK_ATTEMPTS {
                match http.post(url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        sent = Some(format!(
                            "webhook answered {} (attempt {attempt})",
                            r.status().as_u16()
                        ));
                        break;
                    }
                    Ok(r) => {
                        let status = r.status();
                        last = format!("webhook answered {}", status.as_u16());
                        if !(status.is_server_error() || status.as_u16() == 429) {
                            break;
                        }
                    }
                    Err(e) => last = format!("webhook not reached: {}", e.without_url()),
                }
                if attempt < WEBHOOK_ATTEMPTS {
                    tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
                }
            }
            sent.ok_or(last)
        }
    };
    match outcome {
        Ok(note) => {
            ctx.metrics.health_webhook("sent");
            tracing::info!(node = %nm.spec.node_name, check = %failed.name, "{note}");
            note
        }
        Err(e) => {
            ctx.metrics.health_webhook("failed");
            tracing::warn!(node = %nm.spec.node_name, check = %failed.name, error = %e, "webhook call failed");
            publish(
                ctx,
                &nm.object_ref(&()),
                EventType::Warning,
                "WebhookFailed",
                "HealthCheck",
                format!("webhook for failed check {}: {e}", failed.name),
            )
            .await;
            truncate(&format!("webhook failed: {e}"), 500)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn result(name: &str, passed: bool, time: &str) -> HealthCheckResult {
        HealthCheckResult {
            name: name.into(),
            fault: None,
            passed,
            attempts: 1,
            duration_ms: 5,
            message: String::new(),
            output: String::new(),
            time: t(time),
        }
    }

    #[test]
    fn checks_that_passed_in_this_phase_are_not_run_again() {
        let mut st = NodeMaintenanceStatus {
            phase: Phase::HealthCheck,
            phase_since: Some(t("2026-12-03T10:00:00Z")),
            ..Default::default()
        };
        let checks = ["ready".to_string(), "gpu".to_string()];
        assert!(!passed_already(&st, &checks), "nothing run yet");
        st.health_checks = vec![
            result("ready", true, "2026-12-03T10:01:00Z"),
            result("gpu", true, "2026-12-03T10:01:00Z"),
        ];
        assert!(passed_already(&st, &checks));
        assert!(!passed_already(&st, &checks[..1]), "other checks chosen");
        st.phase_since = Some(t("2026-12-03T11:00:00Z"));
        assert!(!passed_already(&st, &checks), "results of an earlier phase");
        st.phase_since = Some(t("2026-12-03T10:00:00Z"));
        st.health_checks[1].passed = false;
        assert!(!passed_already(&st, &checks));
    }

    #[test]
    fn a_failure_is_a_check_failed_in_the_phase_that_just_ended() {
        let before = NodeMaintenanceStatus {
            phase: Phase::HealthCheck,
            phase_since: Some(t("2026-12-03T10:00:00Z")),
            health_checks: vec![result("gpu", false, "2026-12-02T10:00:00Z")],
            ..Default::default()
        };
        let mut after = before.clone();
        after.phase = Phase::Failed;
        assert_eq!(failure(&before, &after), None, "a stale result");
        after.health_checks = vec![
            result("ready", true, "2026-12-03T10:05:00Z"),
            result("gpu", false, "2026-12-03T10:05:00Z"),
        ];
        assert_eq!(failure(&before, &after).unwrap().name, "gpu");
        let mut not_from_checks = before.clone();
        not_from_checks.phase = Phase::Rebooting;
        assert_eq!(failure(&not_from_checks, &after), None);
    }
}
