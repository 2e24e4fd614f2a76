//! The OCI REST client: signed requests, the SDK retry policy, retry tokens, pagination.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::auth::Credentials;
use super::error::OciError;
use super::model::*;
use super::retry::{Jitter, RetryPolicy, Sleeper, TokioSleeper};
use super::sign::{RequestSigner, SignInput, http_date, method_has_body};

/// API version path of Compute, Work Requests and Identity.
pub const API_VERSION: &str = "20160918";

/// Base URLs (with the `/20160918` version path) of the services used.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoints {
    /// Compute (`iaas`).
    pub compute: String,
    /// Work requests (served by `iaas` too).
    pub work_requests: String,
    /// Identity.
    pub identity: String,
}

impl Endpoints {
    /// The public endpoints of a region.
    pub fn for_region(region: &str) -> Self {
        let iaas = format!("https://iaas.{region}.oraclecloud.com/{API_VERSION}");
        Self {
            compute: iaas.clone(),
            work_requests: iaas,
            identity: format!("https://identity.{region}.oci.oraclecloud.com/{API_VERSION}"),
        }
    }

    /// One endpoint for every service (the emulator): `http://127.0.0.1:PORT`.
    pub fn single(base: &str) -> Self {
        let b = format!("{}/{API_VERSION}", base.trim_end_matches('/'));
        Self {
            compute: b.clone(),
            work_requests: b.clone(),
            identity: b,
        }
    }
}

/// One page of a list call.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// `opc-next-page`, absent on the last page.
    pub next_page: Option<String>,
}

/// A raw answer.
#[derive(Debug)]
struct Answer {
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    fn json<T: DeserializeOwned>(&self) -> Result<T, OciError> {
        serde_json::from_slice(&self.body).map_err(|e| OciError::Decode(e.to_string()))
    }
}

/// A clock for the `date` header.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Told of every call (retries included): verb (`GET instances`), outcome (`ok` or the
/// HTTP status or `error`) and seconds.
pub type Observer = Arc<dyn Fn(&str, &str, f64) + Send + Sync>;

/// The OCI client.
#[derive(Clone)]
pub struct OciClient {
    http: reqwest::Client,
    credentials: Credentials,
    endpoints: Endpoints,
    retry: RetryPolicy,
    sleeper: Arc<dyn Sleeper>,
    jitter: Arc<Jitter>,
    clock: Clock,
    observer: Option<Observer>,
}

impl std::fmt::Debug for OciClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciClient")
            .field("endpoints", &self.endpoints)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

pub(crate) fn tls_config() -> Result<rustls::ClientConfig, OciError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| OciError::Config(format!("TLS: {e}")))?
        .with_platform_verifier()
        .map_err(|e| OciError::Config(format!("system certificate roots: {e}")))?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl OciClient {
    /// A client signing with the API key `signer` against `endpoints`, with a 60 s
    /// timeout and the SDK retry policy.
    pub fn new(signer: RequestSigner, endpoints: Endpoints) -> Result<Self, OciError> {
        Self::with_credentials(signer.into(), endpoints)
    }

    /// A client signing with `credentials` (asked for a signer on every attempt) against
    /// `endpoints`, with a 60 s timeout and the SDK retry policy.
    pub fn with_credentials(
        credentials: Credentials,
        endpoints: Endpoints,
    ) -> Result<Self, OciError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("slurm-maint/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .tls_backend_preconfigured(tls_config()?)
            .build()
            .map_err(|e| OciError::Config(e.to_string()))?;
        Ok(Self {
            http,
            credentials,
            endpoints,
            retry: RetryPolicy::default(),
            sleeper: Arc::new(TokioSleeper),
            jitter: Arc::new(Jitter::from_time()),
            clock: Arc::new(Timestamp::now),
            observer: None,
        })
    }

    /// Report every call to `observer` (metrics).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces how retries wait (tests: a recording sleeper that returns at once).
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// Replaces the jitter source.
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = Arc::new(jitter);
        self
    }

    /// Replaces the clock of the `date` header.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    fn url(base: &str, segments: &[&str], query: &[(&str, String)]) -> Result<Url, OciError> {
        let mut url = Url::parse(base).map_err(|e| OciError::Config(format!("{base}: {e}")))?;
        url.path_segments_mut()
            .map_err(|_| OciError::Config(format!("{base} cannot be a base URL")))?
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    async fn once(
        &self,
        signer: &RequestSigner,
        method: &Method,
        url: &Url,
        body: &[u8],
        extra: &[(&str, String)],
    ) -> Result<Answer, OciError> {
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let date = http_date((self.clock)());
        let signed = signer.sign(&SignInput {
            method: method.as_str(),
            path_and_query: &path_and_query,
            host: &host,
            date: &date,
            body,
            content_type: "application/json",
        });
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .header("accept", "application/json");
        for (k, v) in &signed.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        for (k, v) in extra {
            req = req.header(*k, v.as_str());
        }
        if method_has_body(method.as_str()) {
            req = req.body(body.to_vec());
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                OciError::Timeout(e.to_string())
            } else {
                OciError::Transport(e.to_string())
            }
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                OciError::Timeout(e.to_string())
            } else {
                OciError::Transport(e.to_string())
            }
        })?;
        if (200..300).contains(&status) {
            return Ok(Answer {
                headers,
                body: body.to_vec(),
            });
        }
        #[derive(serde::Deserialize)]
        struct ErrBody {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let parsed: Option<ErrBody> = serde_json::from_slice(&body).ok();
        let (code, message) = match parsed {
            Some(b) => (b.code, b.message),
            None => (String::new(), String::from_utf8_lossy(&body).into_owned()),
        };
        Err(OciError::Service {
            status,
            code,
            message,
            opc_request_id: headers
                .get("opc-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        })
    }

    /// One call with retries. POST and PUT carry an `opc-retry-token`, the same on
    /// every attempt (the caller's, else a fresh one).
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        mut extra: Vec<(&str, String)>,
        retry_token: Option<String>,
    ) -> Result<Answer, OciError> {
        if method == Method::POST || method == Method::PUT {
            extra.push((
                "opc-retry-token",
                retry_token.unwrap_or_else(new_retry_token),
            ));
        }
        let body = body.unwrap_or_default();
        let mut previous = None;
        let mut attempt = 1;
        let mut reauthenticated = false;
        loop {
            let started = std::time::Instant::now();
            let signer = self.credentials.signer().await?;
            let result = self.once(&signer, &method, &url, &body, &extra).await;
            if let Some(observe) = &self.observer {
                let outcome = match &result {
                    Ok(_) => "ok".to_string(),
                    Err(OciError::Service { status, .. }) => status.to_string(),
                    Err(_) => "error".to_string(),
                };
                observe(
                    &format!("{method} {}", resource_of(&url)),
                    &outcome,
                    started.elapsed().as_secs_f64(),
                );
            }
            match result {
                Ok(a) => return Ok(a),
                Err(e)
                    if e.status() == Some(401)
                        && !reauthenticated
                        && self.credentials.invalidate(&signer).await =>
                {
                    tracing::debug!(error = %e, "OCI session token refused; fetching a new one");
                    reauthenticated = true;
                }
                Err(e) if e.is_retryable() && attempt < self.retry.max_attempts => {
                    let d = self.retry.next_delay(previous, self.jitter.unit());
                    tracing::debug!(error = %e, attempt, delay_ms = d.as_millis() as u64, "OCI call retried");
                    previous = Some(d);
                    self.sleeper.sleep(d).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One page of `ListInstanceMaintenanceEvents`.
    pub async fn list_instance_maintenance_events_page(
        &self,
        filter: &ListEventsFilter,
        page: Option<&str>,
    ) -> Result<Page<InstanceMaintenanceEvent>, OciError> {
        let mut q = filter.query();
        if let Some(p) = page {
            q.push(("page", p.to_string()));
        }
        let url = Self::url(&self.endpoints.compute, &["instanceMaintenanceEvents"], &q)?;
        let a = self.call(Method::GET, url, None, vec![], None).await?;
        Ok(Page {
            items: a.json()?,
            next_page: a.header("opc-next-page"),
        })
    }

    /// Every page of `ListInstanceMaintenanceEvents` (summaries: no `additionalDetails`).
    pub async fn list_instance_maintenance_events(
        &self,
        filter: &ListEventsFilter,
    ) -> Result<Vec<InstanceMaintenanceEvent>, OciError> {
        let mut all = vec![];
        let mut page: Option<String> = None;
        loop {
            let p = self
                .list_instance_maintenance_events_page(filter, page.as_deref())
                .await?;
            all.extend(p.items);
            match p.next_page {
                Some(n) if Some(&n) != page.as_ref() => page = Some(n),
                _ => return Ok(all),
            }
        }
    }

    /// `GetInstanceMaintenanceEvent`: the full event (with `additionalDetails`) and its etag.
    pub async fn get_instance_maintenance_event(
        &self,
        id: &str,
    ) -> Result<(InstanceMaintenanceEvent, Option<String>), OciError> {
        let url = Self::url(
            &self.endpoints.compute,
            &["instanceMaintenanceEvents", id],
            &[],
        )?;
        let a = self.call(Method::GET, url, None, vec![], None).await?;
        Ok((a.json()?, a.header("etag")))
    }

    /// `UpdateInstanceMaintenanceEvent`; returns the `opc-work-request-id`.
    pub async fn update_instance_maintenance_event(
        &self,
        id: &str,
        details: &UpdateInstanceMaintenanceEventDetails,
        if_match: Option<&str>,
        retry_token: Option<String>,
    ) -> Result<String, OciError> {
        let url = Self::url(
            &self.endpoints.compute,
            &["instanceMaintenanceEvents", id],
            &[],
        )?;
        let body = serde_json::to_vec(details).map_err(|e| OciError::Decode(e.to_string()))?;
        let mut extra = vec![];
        if let Some(m) = if_match {
            extra.push(("if-match", m.to_string()));
        }
        let a = self
            .call(Method::PUT, url, Some(body), extra, retry_token)
            .await?;
        a.header("opc-work-request-id").ok_or_else(|| {
            OciError::Decode("the update answered without an opc-work-request-id".into())
        })
    }

    /// `InstanceAction` (`SOFTRESET`, `RESET`, `STOP`, `START`, …) with an optional body.
    pub async fn instance_action(
        &self,
        id: &str,
        action: &str,
        body: Option<&serde_json::Value>,
        retry_token: Option<String>,
    ) -> Result<Instance, OciError> {
        let url = Self::url(
            &self.endpoints.compute,
            &["instances", id],
            &[("action", action.to_string())],
        )?;
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| OciError::Decode(e.to_string()))?;
        let a = self
            .call(Method::POST, url, body, vec![], retry_token)
            .await?;
        a.json()
    }

    /// `ListInstances` of one compartment (every page).
    pub async fn list_instances(&self, compartment_id: &str) -> Result<Vec<Instance>, OciError> {
        self.all_pages(
            &self.endpoints.compute,
            &["instances"],
            vec![("compartmentId", compartment_id.to_string())],
        )
        .await
    }

    /// `GetInstance`.
    pub async fn get_instance(&self, id: &str) -> Result<Instance, OciError> {
        let url = Self::url(&self.endpoints.compute, &["instances", id], &[])?;
        self.call(Method::GET, url, None, vec![], None)
            .await?
            .json()
    }

    /// `GetWorkRequest`.
    pub async fn get_work_request(&self, id: &str) -> Result<WorkRequest, OciError> {
        let url = Self::url(&self.endpoints.work_requests, &["workRequests", id], &[])?;
        self.call(Method::GET, url, None, vec![], None)
            .await?
            .json()
    }

    /// `ListWorkRequestErrors` (every page).
    pub async fn list_work_request_errors(
        &self,
        id: &str,
    ) -> Result<Vec<WorkRequestError>, OciError> {
        self.all_pages(
            &self.endpoints.work_requests,
            &["workRequests", id, "errors"],
            vec![],
        )
        .await
    }

    /// `ListWorkRequestLogs` (every page).
    pub async fn list_work_request_logs(
        &self,
        id: &str,
    ) -> Result<Vec<WorkRequestLogEntry>, OciError> {
        self.all_pages(
            &self.endpoints.work_requests,
            &["workRequests", id, "logs"],
            vec![],
        )
        .await
    }

    /// Every ACTIVE compartment in the tenancy's subtree, with the tenancy itself first
    /// (Identity does not list it).
    pub async fn list_compartments(&self, tenancy: &str) -> Result<Vec<Compartment>, OciError> {
        let q = vec![
            ("compartmentId", tenancy.to_string()),
            ("compartmentIdInSubtree", "true".to_string()),
            ("accessLevel", "ANY".to_string()),
            ("lifecycleState", "ACTIVE".to_string()),
        ];
        let mut listed: Vec<Compartment> = self
            .all_pages(&self.endpoints.identity, &["compartments"], q)
            .await?;
        listed.retain(|c| c.id != tenancy);
        let mut all = vec![Compartment {
            id: tenancy.to_string(),
            compartment_id: tenancy.to_string(),
            name: "(tenancy)".to_string(),
            description: String::new(),
            time_created: None,
            lifecycle_state: "ACTIVE".to_string(),
            ..Compartment::default()
        }];
        all.extend(listed);
        Ok(all)
    }

    async fn all_pages<T: DeserializeOwned>(
        &self,
        base: &str,
        segments: &[&str],
        query: Vec<(&str, String)>,
    ) -> Result<Vec<T>, OciError> {
        let mut all = vec![];
        let mut page: Option<String> = None;
        loop {
            let mut q = query.clone();
            if let Some(p) = &page {
                q.push(("page", p.clone()));
            }
            let url = Self::url(base, segments, &q)?;
            let a = self.call(Method::GET, url, None, vec![], None).await?;
            let items: Vec<T> = a.json()?;
            all.extend(items);
            match a.header("opc-next-page") {
                Some(n) if Some(&n) != page.as_ref() => page = Some(n),
                _ => return Ok(all),
            }
        }
    }
}

/// The resource a URL names, for metric labels: the first path segment after the API
/// version (`instanceMaintenanceEvents`, `instances`, `workRequests`, `compartments`).
fn resource_of(url: &Url) -> String {
    let mut segs = url.path_segments().into_iter().flatten();
    segs.find(|s| *s == "20160918");
    segs.next().unwrap_or("-").to_string()
}

/// A fresh `opc-retry-token` (32 random hex characters).
pub fn new_retry_token() -> String {
    use rsa::rand_core::{OsRng, RngCore};
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
