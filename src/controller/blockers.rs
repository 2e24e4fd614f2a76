//! `spec.blockers`: one `GET /api/v1/alerts` to Prometheus per pass, read into the
//! [`Blockers`] fact the planner holds new work for. Nothing here decides anything.

use std::sync::OnceLock;
use std::time::Duration;

use kube::ResourceExt;
use serde::Deserialize;

use super::Context;
use crate::api::MaintenancePolicy;
use crate::api::policy::Blockers as BlockersSpec;
use crate::plan::Blockers;

/// Most bytes of an error answer kept in the message.
const ERROR_EXCERPT: usize = 300;

/// Prometheus's answer to `GET /api/v1/alerts` (the parts read).
#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<AlertList>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct AlertList {
    alerts: Vec<Alert>,
}

#[derive(Deserialize)]
struct Alert {
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    state: String,
}

/// The named alerts firing in `body` (Prometheus's JSON answer), in the spec's order.
pub fn firing(body: &[u8], names: &[String]) -> Result<Vec<String>, String> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| format!("not an answer of the alerts API: {e}"))?;
    if answer.status != "success" {
        return Err(format!(
            "status {:?}: {}",
            answer.status,
            answer.error.unwrap_or_default()
        ));
    }
    let alerts = answer.data.ok_or("status success without data")?.alerts;
    let mut out: Vec<String> = vec![];
    for name in names {
        let fires = alerts
            .iter()
            .any(|a| a.state == "firing" && a.labels.get("alertname").is_some_and(|n| n == name));
        if fires && !out.contains(name) {
            out.push(name.clone());
        }
    }
    Ok(out)
}

/// One client for every policy (each request carries its own timeout).
fn http() -> Result<&'static reqwest::Client, String> {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = HTTP.get() {
        return Ok(c);
    }
    let tls = crate::oci::client::tls_config().map_err(|e| e.to_string())?;
    let c = reqwest::Client::builder()
        .user_agent(concat!("slurm-maint/", env!("CARGO_PKG_VERSION")))
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    Ok(HTTP.get_or_init(|| c))
}

/// The fact of a pass: what Prometheus says of the policy's blocking alerts now.
pub async fn gather(ctx: &Context, policy: &MaintenancePolicy) -> Blockers {
    let Some(spec) = policy.spec.blockers.as_ref() else {
        return Blockers::Unset;
    };
    let b = ask(ctx, policy, spec).await;
    if !matches!(b, Blockers::Firing(_)) {
        tracing::warn!(policy = %policy.name_any(), blockers = ?b, "blocking alerts unknown");
    }
    b
}

async fn ask(ctx: &Context, policy: &MaintenancePolicy, spec: &BlockersSpec) -> Blockers {
    let token = match &spec.token_secret_ref {
        None => None,
        Some(r) => {
            let ns = policy.namespace().unwrap_or_default();
            match super::connect::secret_token(&ctx.client, &ns, r).await {
                Ok(t) => Some(t),
                Err(e) => return Blockers::Error(format!("Prometheus token: {e}")),
            }
        }
    };
    let http = match http() {
        Ok(c) => c,
        Err(e) => return Blockers::Error(e),
    };
    let url = format!(
        "{}/api/v1/alerts",
        spec.prometheus_url.trim_end_matches('/')
    );
    let mut req = http
        .get(&url)
        .timeout(Duration::from_secs(spec.timeout.0.max(1)));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let answer = async {
        let r = req.send().await?;
        let status = r.status();
        Ok::<_, reqwest::Error>((status, r.bytes().await?))
    }
    .await;
    match answer {
        Err(e) => Blockers::Unreachable(format!("GET {url}: {}", error_chain(&e))),
        Ok((status, body)) if !status.is_success() => {
            let text = String::from_utf8_lossy(&body);
            let cut: String = text.chars().take(ERROR_EXCERPT).collect();
            Blockers::Error(format!("GET {url}: HTTP {status}: {}", cut.trim()))
        }
        Ok((_, body)) => match firing(&body, &spec.alerts) {
            Ok(names) => Blockers::Firing(names),
            Err(e) => Blockers::Error(format!("GET {url}: {e}")),
        },
    }
}

/// An error with its causes (reqwest's own message says little: "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_named_alerts_in_state_firing_count() {
        let body = br#"{"status":"success","data":{"alerts":[
            {"labels":{"alertname":"NodeDown","instance":"a"},"state":"firing","activeAt":"2026-01-01T00:00:00Z","value":"1e+00"},
            {"labels":{"alertname":"NodeDown","instance":"b"},"state":"firing"},
            {"labels":{"alertname":"DiskFull"},"state":"pending"},
            {"labels":{"alertname":"Other"},"state":"firing"}
        ]}}"#;
        assert_eq!(
            firing(body, &names(&["DiskFull", "NodeDown", "Absent"])).unwrap(),
            names(&["NodeDown"])
        );
        assert_eq!(
            firing(body, &names(&["DiskFull"])).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_error_answer_or_garbage_is_an_error() {
        let err = firing(
            br#"{"status":"error","errorType":"bad_data","error":"boom"}"#,
            &names(&["A"]),
        )
        .unwrap_err();
        assert!(err.contains("boom"), "{err}");
        assert!(firing(b"<html>proxy</html>", &names(&["A"])).is_err());
        assert!(firing(br#"{"status":"success"}"#, &names(&["A"])).is_err());
    }
}
