//! The controller's view of Slurm: the [`SlurmClient`] trait, and its implementation over
//! the agent's HTTP API. The simulator implements the same trait.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::api::{
    CheckReport, CheckRequest, CreateReservation, Done, DrainRequest, ErrorBody, NextState,
    PartitionSnapshot, RebootRequest, StartTime, UpdateReservation,
};
use crate::plan::{Action, HealthResult};
use crate::tls;

/// A failed call to Slurm (through the agent).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlurmError {
    /// The agent could not be reached or did not answer in time.
    #[error("agent unreachable: {0}")]
    Unreachable(String),
    /// The agent refused the request (bad name, not ours, not preemptable, …).
    #[error("agent refused ({code}, HTTP {status}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// Slurm itself failed; `message` is Slurm's own.
    #[error("Slurm failed ({code}, HTTP {status}): {message}")]
    Slurm {
        status: u16,
        code: String,
        message: String,
    },
    /// The answer could not be understood.
    #[error("unexpected answer from the agent: {0}")]
    Protocol(String),
}

impl SlurmError {
    /// Worth retrying: the agent or Slurm may answer next time.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Slurm { status, code, .. } => {
                *status >= 500
                    && matches!(
                        code.as_str(),
                        "SlurmTimeout" | "SlurmUnavailable" | "SlurmctldDown"
                    )
            }
            _ => false,
        }
    }

    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Refused { .. } => "refused",
            Self::Slurm { .. } => "slurm",
            Self::Protocol(_) => "protocol",
        }
    }
}

/// Everything the controllers ask of Slurm.
pub trait SlurmClient: Send + Sync {
    /// One snapshot of a partition: nodes, active jobs on them, reservations, partitions.
    fn snapshot<'a>(
        &'a self,
        partition: &'a str,
    ) -> BoxFuture<'a, Result<PartitionSnapshot, SlurmError>>;
    /// Carry out one planned action.
    fn execute<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<Done, SlurmError>>;
    /// Run the site's health check on a node.
    fn health_check<'a>(&'a self, node: &'a str)
    -> BoxFuture<'a, Result<HealthResult, SlurmError>>;
    /// Run one named check of the agent's checks file on a node, for `fault`.
    fn run_check<'a>(
        &'a self,
        node: &'a str,
        check: &'a str,
        fault: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CheckReport, SlurmError>>;
    /// Take a node out of service with a reason (owned prefix added by the agent).
    fn drain<'a>(
        &'a self,
        node: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<Done, SlurmError>>;
    /// Return a node this operator drained to service.
    fn resume<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Done, SlurmError>>;
}

/// Longest wait for one named check's answer (its attempts, timeouts and back-off are
/// the agent's).
pub const CHECK_REQUEST_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// [`SlurmClient`] over the agent's HTTP API, with a bearer token, timeouts and retries
/// with backoff on transient errors only.
#[derive(Clone)]
pub struct AgentClient {
    base: String,
    token: String,
    http: reqwest::Client,
    retries: u32,
    backoff: Duration,
}

impl AgentClient {
    /// A client for the agent at `base` (e.g. `http://agent:8080`); an `https://` agent
    /// must have a certificate the system trusts (see [`AgentClient::with_tls`]).
    pub fn new(base: &str, token: &str, timeout: Duration) -> Result<Self, SlurmError> {
        Self::with_tls(base, token, timeout, None, None)
    }

    /// A client for the agent at `base`, `http://` or `https://`. For https, `ca_pem` (a
    /// PEM CA bundle) is what the agent's certificate must chain to, instead of the
    /// system's roots; `identity_pem` (PEM certificate chain and private key) is the
    /// client certificate, for an agent started with `--tls-client-ca`. Neither is
    /// allowed with `http://`.
    pub fn with_tls(
        base: &str,
        token: &str,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
        identity_pem: Option<&[u8]>,
    ) -> Result<Self, SlurmError> {
        let invalid =
            |message: String| SlurmError::Protocol(format!("agent URL {base:?}: {message}"));
        let https = match base.split_once("://") {
            Some(("http", _)) => false,
            Some(("https", _)) => true,
            _ => return Err(invalid("only http:// and https:// are supported".into())),
        };
        if !https && (ca_pem.is_some() || identity_pem.is_some()) {
            return Err(invalid(
                "a CA or client certificate needs an https:// URL".into(),
            ));
        }
        // Always preconfigured: reqwest has no crypto provider of its own here.
        let tls = client_tls_config(https, ca_pem, identity_pem).map_err(invalid)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .tls_backend_preconfigured(tls)
            .https_only(https)
            .build()
            .map_err(|e| SlurmError::Protocol(e.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
            retries: 3,
            backoff: Duration::from_millis(200),
        })
    }

    /// Retry transient failures this many times (default 3).
    pub fn with_retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    async fn call<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, SlurmError> {
        let mut attempt = 0;
        loop {
            match self.call_once(method.clone(), path, body).await {
                Err(e) if e.is_transient() && attempt < self.retries => {
                    attempt += 1;
                    tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                }
                other => return other,
            }
        }
    }

    async fn call_once<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, SlurmError> {
        self.call_within(method, path, body, None).await
    }

    /// One call; `timeout` replaces the client's own.
    async fn call_within<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<T, SlurmError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| SlurmError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| SlurmError::Unreachable(e.to_string()))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| SlurmError::Protocol(e.to_string()));
        }
        let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
            error: String::from_utf8_lossy(&bytes).into_owned(),
            code: "Unknown".into(),
        });
        Err(if status >= 502 || err.code.starts_with("Slurm") {
            SlurmError::Slurm {
                status,
                code: err.code,
                message: err.error,
            }
        } else {
            SlurmError::Refused {
                status,
                code: err.code,
                message: err.error,
            }
        })
    }

    fn post<'a, B: Serialize + Send + Sync + 'a>(
        &'a self,
        path: String,
        body: B,
    ) -> BoxFuture<'a, Result<Done, SlurmError>> {
        Box::pin(async move { self.call(reqwest::Method::POST, &path, Some(&body)).await })
    }
}

/// rustls (ring) trusting `ca_pem`, or for https without it the platform's roots, and
/// presenting the client certificate in `identity_pem` if given. Plain http trusts nothing.
fn client_tls_config(
    https: bool,
    ca_pem: Option<&[u8]>,
    identity_pem: Option<&[u8]>,
) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match ca_pem {
        Some(pem) => builder.with_root_certificates(tls::roots(pem, "agent CA")?),
        None if https => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| format!("system certificate roots: {e}"))?
        }
        None => builder.with_root_certificates(rustls::RootCertStore::empty()),
    };
    let mut config = match identity_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let chain = tls::certificates(pem, "client certificate")?;
            let key = tls::private_key(pem, "client certificate")?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl SlurmClient for AgentClient {
    fn snapshot<'a>(
        &'a self,
        partition: &'a str,
    ) -> BoxFuture<'a, Result<PartitionSnapshot, SlurmError>> {
        Box::pin(async move {
            self.call::<(), _>(
                reqwest::Method::GET,
                &format!("/v1/partitions/{partition}/snapshot"),
                None,
            )
            .await
        })
    }

    fn execute<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<Done, SlurmError>> {
        match action {
            Action::CreateReservation {
                name,
                node,
                with,
                start,
                duration,
                users,
                accounts,
                flags,
            } => self.post(
                "/v1/reservations".into(),
                CreateReservation {
                    name: name.clone(),
                    nodes: std::iter::once(node).chain(with).cloned().collect(),
                    start: StartTime::from(*start),
                    duration_minutes: (duration.as_secs().max(60) as u64).div_ceil(60),
                    users: users.clone(),
                    accounts: accounts.clone(),
                    flags: flags.clone(),
                },
            ),
            Action::UpdateReservationStart { name, start } => {
                let body = UpdateReservation {
                    start: Some(StartTime::from(*start)),
                    ..Default::default()
                };
                Box::pin(async move {
                    self.call(
                        reqwest::Method::PATCH,
                        &format!("/v1/reservations/{name}"),
                        Some(&body),
                    )
                    .await
                })
            }
            Action::DeleteReservation { name } => Box::pin(async move {
                self.call::<(), _>(
                    reqwest::Method::DELETE,
                    &format!("/v1/reservations/{name}"),
                    None,
                )
                .await
            }),
            Action::CancelJob { job_id, .. } => {
                self.post(format!("/v1/jobs/{job_id}/cancel"), serde_json::json!({}))
            }
            Action::Drain { node, reason } => self.drain(node, reason),
            Action::Reboot { node, reason } => self.post(
                format!("/v1/nodes/{node}/reboot"),
                RebootRequest {
                    reason: crate::agent::validate::boring_text(reason, 256),
                    next_state: NextState::Resume,
                },
            ),
            Action::Resume { node } => self.resume(node),
            Action::ScheduleOciEvent { event_id, .. } => {
                let e = SlurmError::Protocol(format!(
                    "scheduling OCI event {event_id} is not a Slurm action"
                ));
                Box::pin(async move { Err(e) })
            }
            Action::ClearReason { node } => self.post(
                format!("/v1/nodes/{node}/clear-reason"),
                serde_json::json!({}),
            ),
        }
    }

    fn health_check<'a>(
        &'a self,
        node: &'a str,
    ) -> BoxFuture<'a, Result<HealthResult, SlurmError>> {
        Box::pin(async move {
            self.call(
                reqwest::Method::POST,
                &format!("/v1/nodes/{node}/health"),
                Some(&serde_json::json!({})),
            )
            .await
        })
    }

    /// Never retried (a check is not idempotent in cost), and allowed
    /// [`CHECK_REQUEST_TIMEOUT`]: the agent bounds each check by its own timeouts.
    fn run_check<'a>(
        &'a self,
        node: &'a str,
        check: &'a str,
        fault: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CheckReport, SlurmError>> {
        Box::pin(async move {
            let body = CheckRequest {
                fault: fault.map(String::from),
            };
            self.call_within(
                reqwest::Method::POST,
                &format!("/v1/nodes/{node}/checks/{check}"),
                Some(&body),
                Some(CHECK_REQUEST_TIMEOUT),
            )
            .await
        })
    }

    fn drain<'a>(
        &'a self,
        node: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<Done, SlurmError>> {
        self.post(
            format!("/v1/nodes/{node}/drain"),
            DrainRequest {
                reason: crate::agent::validate::boring_text(reason, 256),
            },
        )
    }

    fn resume<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Done, SlurmError>> {
        self.post(format!("/v1/nodes/{node}/resume"), serde_json::json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_tls_options() {
        let t = Duration::from_secs(1);
        assert!(AgentClient::new("http://agent:8080/", "t", t).is_ok());
        let e = AgentClient::new("ftp://agent", "t", t).err().unwrap();
        assert!(e.to_string().contains("http:// and https://"), "{e}");
        let e = AgentClient::with_tls("http://agent", "t", t, Some(b"x"), None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("needs an https:// URL"), "{e}");
        let e = AgentClient::with_tls("https://agent", "t", t, Some(b"not pem"), None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("agent CA"), "{e}");
    }
}

#[cfg(test)]
mod retry_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::Json;
    use axum::http::StatusCode;
    use axum::routing::{get, post};

    use super::*;

    /// An agent that fails `fail` times with `status`/`code`, then answers.
    async fn flaky(fail: u32, status: u16, code: &'static str) -> (String, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let answer = move || {
            let c = c.clone();
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst);
                if n < fail {
                    let body = serde_json::json!({"error": "slurm said no", "code": code});
                    return (StatusCode::from_u16(status).unwrap(), Json(body));
                }
                (
                    StatusCode::OK,
                    Json(serde_json::to_value(PartitionSnapshot::default()).unwrap()),
                )
            }
        };
        let app = axum::Router::new()
            .route("/v1/partitions/{p}/snapshot", get(answer.clone()))
            .route("/v1/jobs/{id}/cancel", post(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), calls)
    }

    fn client(base: &str) -> AgentClient {
        AgentClient::new(base, "t", Duration::from_secs(5))
            .unwrap()
            .with_retries(3, Duration::from_millis(5))
    }

    #[tokio::test]
    async fn transient_slurm_errors_are_retried() {
        let (base, calls) = flaky(2, 502, "SlurmTimeout").await;
        client(&base).snapshot("p").await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retries_give_up_after_the_limit() {
        let (base, calls) = flaky(10, 502, "SlurmctldDown").await;
        let e = client(&base).snapshot("p").await.unwrap_err();
        assert!(matches!(e, SlurmError::Slurm { status: 502, .. }), "{e}");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn refusals_and_slurm_failures_are_not_retried() {
        let (base, calls) = flaky(10, 409, "NotPreemptable").await;
        let e = client(&base)
            .execute(&Action::CancelJob {
                job_id: 1,
                node: "n1".into(),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&e, SlurmError::Refused { status: 409, code, .. } if code == "NotPreemptable"),
            "{e}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let (base, calls) = flaky(10, 502, "SlurmFailed").await;
        assert!(client(&base).snapshot("p").await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unreachable_agent_is_transient() {
        let e = client("http://127.0.0.1:1")
            .snapshot("p")
            .await
            .unwrap_err();
        assert!(
            matches!(e, SlurmError::Unreachable(_)) && e.is_transient(),
            "{e}"
        );
    }
}
