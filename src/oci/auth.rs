//! Where the OCI client's request signers come from: an API key (a fixed signer), OKE
//! workload identity (resource principal v2.2: the pod's ServiceAccount token exchanged at
//! the cluster's proxymux for a resource principal session token), or instance principals
//! (the instance's identity certificate from the metadata service, federated at the Auth
//! service's `/v1/x509` for a security token).
//!
//! Session credentials sign with a fresh RSA session key and the key id `ST$<token>`; the
//! token is cached and fetched again when it is within [`REFRESH_BEFORE`] (or half its
//! lifetime, if shorter) of its `exp`, and once after a 401 from a service.
//!
//! Endpoints, as in the SDKs, with overrides for tests and unusual setups:
//! - workload identity: `https://$KUBERNETES_SERVICE_HOST:12250/resourcePrincipalSessionTokens`,
//!   verified with `OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH` (default the ServiceAccount
//!   `ca.crt`); the ServiceAccount token from `SLURM_MAINT_OCI_SA_TOKEN_PATH` (default the
//!   projected token); the whole URL from `SLURM_MAINT_OCI_RPST_ENDPOINT`; the region from
//!   `OCI_RESOURCE_PRINCIPAL_REGION`.
//! - instance principals: the metadata service at `OCI_METADATA_BASE_URL` (default
//!   `http://169.254.169.254/opc/v2`), the Auth service at `OCI_SDK_AUTH_CLIENT_REGION_URL`
//!   (default `https://auth.<region>.<realm domain>`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use jiff::{SignedDuration, Timestamp};
use rsa::RsaPrivateKey;
use rsa::pkcs8::EncodePublicKey;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::client::Clock;
use super::config::{ApiKey, parse_private_key};
use super::error::OciError;
use super::sign::{RequestSigner, SignInput, http_date};

/// A session token is fetched again when it expires within this (or within half its
/// lifetime, if that is shorter).
pub const REFRESH_BEFORE: SignedDuration = SignedDuration::from_mins(5);
/// The projected ServiceAccount token of a pod.
pub const SA_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The cluster CA of a pod, which also signs the OKE proxymux certificate.
pub const SA_CA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// The port of the OKE proxymux on `KUBERNETES_SERVICE_HOST`.
pub const PROXYMUX_PORT: u16 = 12250;
/// The instance metadata service (IMDS v2).
pub const METADATA_BASE: &str = "http://169.254.169.254/opc/v2";
/// Size of the generated session keys.
pub const SESSION_KEY_BITS: usize = 2048;

/// The claims of a JWT this client needs; the signature is not checked (the service does).
#[derive(Clone, Debug, PartialEq)]
pub struct JwtClaims {
    /// `exp`.
    pub exp: Timestamp,
    /// `iat`, when present.
    pub iat: Option<Timestamp>,
    /// Every claim.
    pub all: serde_json::Map<String, serde_json::Value>,
}

/// Decodes the payload of a JWT (`header.payload.signature`, base64url) and its `exp`.
pub fn parse_jwt(token: &str) -> Result<JwtClaims, OciError> {
    let bad = |m: String| OciError::Decode(format!("security token: {m}"));
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(bad(format!("{} parts, not 3", parts.len())));
    }
    let payload = B64URL
        .decode(parts[1].trim_end_matches('='))
        .map_err(|e| bad(format!("payload is not base64url: {e}")))?;
    let all: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&payload).map_err(|e| bad(format!("payload: {e}")))?;
    let time = |k: &str| {
        all.get(k)
            .and_then(serde_json::Value::as_f64)
            .and_then(|s| Timestamp::from_second(s as i64).ok())
    };
    let exp = time("exp").ok_or_else(|| bad("no numeric exp claim".into()))?;
    Ok(JwtClaims {
        exp,
        iat: time("iat"),
        all,
    })
}

/// base64 of the DER SubjectPublicKeyInfo of a key: the PEM body without armor or line
/// breaks, as the SDKs send session public keys.
pub fn public_key_b64(key: &RsaPrivateKey) -> String {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .expect("an RSA public key always encodes");
    B64.encode(der.as_bytes())
}

/// OKE workload identity (resource principal v2.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadIdentity {
    /// The token exchange URL (the proxymux).
    pub endpoint: String,
    /// File holding the pod's ServiceAccount token (read at every exchange: kubelet
    /// rotates it).
    pub sa_token_path: PathBuf,
    /// PEM CA bundle that verifies the proxymux certificate.
    pub ca_path: PathBuf,
    /// `OCI_RESOURCE_PRINCIPAL_REGION`, when set.
    pub region: Option<String>,
}

impl WorkloadIdentity {
    /// From the pod's environment (see the module documentation).
    pub fn from_env() -> Result<Self, OciError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// From environment variables looked up by `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, OciError> {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = var("OCI_RESOURCE_PRINCIPAL_VERSION")
            && v.trim() != "2.2"
        {
            return Err(OciError::Config(format!(
                "OCI_RESOURCE_PRINCIPAL_VERSION is {v}; OKE workload identity is version 2.2"
            )));
        }
        let endpoint = match (
            var("SLURM_MAINT_OCI_RPST_ENDPOINT"),
            var("KUBERNETES_SERVICE_HOST"),
        ) {
            (Some(e), _) => e,
            (None, Some(host)) => {
                let host = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host
                };
                format!("https://{host}:{PROXYMUX_PORT}/resourcePrincipalSessionTokens")
            }
            (None, None) => {
                return Err(OciError::Config(
                    "workload identity needs KUBERNETES_SERVICE_HOST (run in an OKE pod)".into(),
                ));
            }
        };
        Ok(Self {
            endpoint,
            sa_token_path: var("SLURM_MAINT_OCI_SA_TOKEN_PATH")
                .unwrap_or_else(|| SA_TOKEN_PATH.into())
                .into(),
            ca_path: var("OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH")
                .unwrap_or_else(|| SA_CA_PATH.into())
                .into(),
            region: var("OCI_RESOURCE_PRINCIPAL_REGION"),
        })
    }
}

/// Instance principals.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InstancePrincipal {
    /// Base URL of the metadata service, e.g. `http://169.254.169.254/opc/v2`.
    pub metadata_base: String,
    /// Base URL of the Auth service (`/v1/x509` is appended); none: derived from the
    /// instance's region and realm.
    pub auth_endpoint: Option<String>,
}

impl InstancePrincipal {
    /// From the environment (see the module documentation).
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// From environment variables looked up by `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Self {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        Self {
            metadata_base: var("OCI_METADATA_BASE_URL")
                .map(|v| v.trim().trim_end_matches('/').to_string())
                .unwrap_or_else(|| METADATA_BASE.into()),
            auth_endpoint: var("OCI_SDK_AUTH_CLIENT_REGION_URL"),
        }
    }
}

/// What a [`SessionProvider`] exchanges for a token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SessionSource {
    /// OKE workload identity.
    WorkloadIdentity(WorkloadIdentity),
    /// Instance principals.
    InstancePrincipal(InstancePrincipal),
}

/// A session token with the key it was issued for.
#[derive(Clone, Debug)]
struct Session {
    claims: JwtClaims,
    signer: Arc<RequestSigner>,
}

/// Fetches, caches and refreshes session tokens of one source.
pub struct SessionProvider {
    source: SessionSource,
    clock: Clock,
    session: tokio::sync::Mutex<Option<Session>>,
    fetched: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for SessionProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionProvider")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The signing credentials of a client.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// An API key: one fixed signer.
    ApiKey(Arc<RequestSigner>),
    /// Session tokens from workload identity or instance principals.
    Session(Arc<SessionProvider>),
}

impl From<RequestSigner> for Credentials {
    fn from(s: RequestSigner) -> Self {
        Credentials::ApiKey(Arc::new(s))
    }
}

impl Credentials {
    /// A fixed signer of an API key.
    pub fn api_key(key: &ApiKey) -> Self {
        key.signer().into()
    }

    /// Session credentials of `source`, on the real clock.
    pub fn session(source: SessionSource) -> Self {
        Self::session_with_clock(source, Arc::new(Timestamp::now))
    }

    /// Session credentials of `source`, deciding expiry on `clock`.
    pub fn session_with_clock(source: SessionSource, clock: Clock) -> Self {
        Credentials::Session(Arc::new(SessionProvider {
            source,
            clock,
            session: tokio::sync::Mutex::new(None),
            fetched: Default::default(),
        }))
    }

    /// Session credentials of `source` shared by every caller in this process, so that a
    /// token is fetched once and not once per client built.
    pub fn shared_session(source: SessionSource) -> Self {
        static SHARED: OnceLock<Mutex<HashMap<SessionSource, Credentials>>> = OnceLock::new();
        let mut map = SHARED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.entry(source.clone())
            .or_insert_with(|| Self::session(source))
            .clone()
    }

    /// The signer to use now: the API key, or the current session (fetched or refreshed
    /// when missing or near expiry).
    pub async fn signer(&self) -> Result<Arc<RequestSigner>, OciError> {
        match self {
            Credentials::ApiKey(s) => Ok(s.clone()),
            Credentials::Session(p) => p.signer().await,
        }
    }

    /// After a 401 from a request signed by `failed`: drops that session so the next
    /// [`Credentials::signer`] fetches a new token. False for an API key (nothing to
    /// refresh).
    pub async fn invalidate(&self, failed: &RequestSigner) -> bool {
        match self {
            Credentials::ApiKey(_) => false,
            Credentials::Session(p) => {
                let mut s = p.session.lock().await;
                if s.as_ref()
                    .is_some_and(|s| s.signer.key_id() == failed.key_id())
                {
                    *s = None;
                }
                true
            }
        }
    }

    /// Tokens fetched so far (0 for an API key).
    pub fn tokens_fetched(&self) -> u64 {
        match self {
            Credentials::ApiKey(_) => 0,
            Credentials::Session(p) => p.fetched.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

impl SessionProvider {
    fn fresh(&self, s: &Session) -> bool {
        let now = (self.clock)();
        let margin = match s.claims.iat {
            Some(iat) => REFRESH_BEFORE.min(s.claims.exp.duration_since(iat) / 2),
            None => REFRESH_BEFORE,
        };
        now + margin < s.claims.exp
    }

    async fn signer(&self) -> Result<Arc<RequestSigner>, OciError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref()
            && self.fresh(s)
        {
            return Ok(s.signer.clone());
        }
        let key = generate_session_key().await?;
        let token = match &self.source {
            SessionSource::WorkloadIdentity(w) => exchange_sa_token(w, &key).await?,
            SessionSource::InstancePrincipal(i) => federate_x509(i, &key).await?,
        };
        let claims = parse_jwt(&token)?;
        let signer = Arc::new(RequestSigner::with_key_id(format!("ST${token}"), key));
        self.fetched
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(exp = %claims.exp, source = ?self.source, "OCI session token fetched");
        *guard = Some(Session {
            claims,
            signer: signer.clone(),
        });
        Ok(signer)
    }
}

async fn generate_session_key() -> Result<RsaPrivateKey, OciError> {
    tokio::task::spawn_blocking(|| {
        RsaPrivateKey::new(&mut rsa::rand_core::OsRng, SESSION_KEY_BITS)
            .map_err(|e| OciError::Config(format!("session key: {e}")))
    })
    .await
    .map_err(|e| OciError::Config(format!("session key: {e}")))?
}

fn http_client(tls: rustls::ClientConfig) -> Result<reqwest::Client, OciError> {
    reqwest::Client::builder()
        .user_agent(concat!("slurm-maint/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| OciError::Config(e.to_string()))
}

fn transport(e: reqwest::Error) -> OciError {
    if e.is_timeout() {
        OciError::Timeout(e.to_string())
    } else {
        OciError::Transport(e.to_string())
    }
}

/// A non-2xx answer of a token endpoint as a service error.
async fn service_error(what: &str, resp: reqwest::Response) -> OciError {
    #[derive(Deserialize, Default)]
    struct ErrBody {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let status = resp.status().as_u16();
    let rid = resp
        .headers()
        .get("opc-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.unwrap_or_default();
    let parsed: ErrBody = serde_json::from_slice(&body).unwrap_or_default();
    let message = if parsed.message.is_empty() {
        String::from_utf8_lossy(&body).into_owned()
    } else {
        parsed.message
    };
    OciError::Service {
        status,
        code: parsed.code,
        message: format!("{what}: {message}"),
        opc_request_id: rid,
    }
}

/// Exchanges the ServiceAccount token for a resource principal session token.
async fn exchange_sa_token(w: &WorkloadIdentity, key: &RsaPrivateKey) -> Result<String, OciError> {
    let read = |p: &PathBuf, what: &str| {
        std::fs::read(p)
            .map_err(|e| OciError::Config(format!("cannot read the {what} {}: {e}", p.display())))
    };
    let sa = String::from_utf8(read(&w.sa_token_path, "ServiceAccount token")?)
        .map_err(|_| OciError::Config("the ServiceAccount token is not UTF-8".into()))?;
    let sa = sa.trim();
    let ca = read(&w.ca_path, "ServiceAccount CA")?;
    let roots =
        crate::tls::roots(&ca, &w.ca_path.display().to_string()).map_err(OciError::Config)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| OciError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let resp = http_client(tls)?
        .post(&w.endpoint)
        .bearer_auth(sa)
        .header("opc-request-id", super::client::new_retry_token())
        .json(&serde_json::json!({ "podKey": public_key_b64(key) }))
        .send()
        .await
        .map_err(transport)?;
    if !resp.status().is_success() {
        return Err(service_error("resource principal session token", resp).await);
    }
    let body = resp.bytes().await.map_err(transport)?;
    let bad = |m: &str| OciError::Decode(format!("resource principal session token answer: {m}"));
    let json = B64
        .decode(body.trim_ascii())
        .map_err(|_| bad("not base64"))?;
    #[derive(Deserialize)]
    struct Answer {
        token: String,
    }
    let a: Answer = serde_json::from_slice(&json).map_err(|e| bad(&e.to_string()))?;
    Ok(a.token.strip_prefix("ST$").unwrap_or(&a.token).to_string())
}

/// The tenancy OCID in a leaf certificate's subject (`opc-tenant:<ocid>`, or
/// `opc-identity:<ocid>`).
pub fn tenancy_of_certificate(cert: &x509_cert::Certificate) -> Option<String> {
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter_map(|atv| directory_string(&atv.value))
        .find_map(|v| {
            v.strip_prefix("opc-tenant:")
                .or_else(|| v.strip_prefix("opc-identity:"))
                .map(str::to_string)
        })
}

fn directory_string(v: &x509_cert::der::Any) -> Option<String> {
    use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};
    v.decode_as::<Utf8StringRef<'_>>()
        .map(|s| s.as_str().to_string())
        .or_else(|_| {
            v.decode_as::<PrintableStringRef<'_>>()
                .map(|s| s.as_str().to_string())
        })
        .ok()
}

/// Parses the first certificate of a PEM text.
pub fn parse_certificate(pem: &str, what: &str) -> Result<x509_cert::Certificate, OciError> {
    use x509_cert::der::DecodePem;
    x509_cert::Certificate::from_pem(pem.trim())
        .map_err(|e| OciError::Config(format!("{what}: not a PEM certificate: {e}")))
}

/// Upper-case colon hex of the SHA-256 of a certificate's DER, the `fed-x509-sha256`
/// key id fingerprint.
pub fn certificate_sha256_fingerprint(cert: &x509_cert::Certificate) -> String {
    use x509_cert::der::Encode;
    let der = cert.to_der().expect("a parsed certificate encodes");
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn certificate_b64(cert: &x509_cert::Certificate) -> String {
    use x509_cert::der::Encode;
    B64.encode(cert.to_der().expect("a parsed certificate encodes"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegionInfo {
    region_identifier: String,
    #[serde(default)]
    realm_domain_component: Option<String>,
}

/// Reads the instance identity from the metadata service and federates it at the Auth
/// service for a security token bound to `key`.
async fn federate_x509(i: &InstancePrincipal, key: &RsaPrivateKey) -> Result<String, OciError> {
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .map_err(|e| OciError::Config(e.to_string()))?;
    let base = i.metadata_base.trim_end_matches('/');
    let imds = |path: &'static str| {
        let plain = plain.clone();
        let url = format!("{base}/{path}");
        async move {
            let resp = plain
                .get(&url)
                .bearer_auth("Oracle")
                .send()
                .await
                .map_err(|e| OciError::Transport(format!("instance metadata {url}: {e}")))?;
            if !resp.status().is_success() {
                return Err(service_error(&format!("instance metadata {url}"), resp).await);
            }
            resp.text().await.map_err(transport)
        }
    };
    let leaf_pem = imds("identity/cert.pem").await?;
    let leaf_key_pem = imds("identity/key.pem").await?;
    let intermediate_pem = imds("identity/intermediate.pem").await?;
    let leaf = parse_certificate(&leaf_pem, "instance identity cert.pem")?;
    let intermediate = parse_certificate(&intermediate_pem, "instance identity intermediate.pem")?;
    let leaf_key = parse_private_key(&leaf_key_pem, None)?;
    let tenancy = tenancy_of_certificate(&leaf).ok_or_else(|| {
        OciError::Config("the instance certificate names no opc-tenant in its subject".into())
    })?;
    let auth = match &i.auth_endpoint {
        Some(a) => a.trim_end_matches('/').to_string(),
        None => {
            let info: RegionInfo = serde_json::from_str(&imds("instance/regionInfo").await?)
                .map_err(|e| OciError::Decode(format!("instance/regionInfo: {e}")))?;
            let domain = info
                .realm_domain_component
                .unwrap_or_else(|| "oraclecloud.com".into());
            format!("https://auth.{}.{domain}", info.region_identifier)
        }
    };
    let body = serde_json::to_vec(&serde_json::json!({
        "certificate": certificate_b64(&leaf),
        "publicKey": public_key_b64(key),
        "intermediateCertificates": [certificate_b64(&intermediate)],
        "purpose": "DEFAULT",
        "fingerprintAlgorithm": "SHA256",
    }))
    .map_err(|e| OciError::Decode(e.to_string()))?;
    let url = reqwest::Url::parse(&format!("{auth}/v1/x509"))
        .map_err(|e| OciError::Config(format!("{auth}: {e}")))?;
    let key_id = format!(
        "{tenancy}/fed-x509-sha256/{}",
        certificate_sha256_fingerprint(&leaf)
    );
    let date = http_date(Timestamp::now());
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let signed = RequestSigner::with_key_id(key_id, leaf_key).sign_federation(&SignInput {
        method: "POST",
        path_and_query: url.path(),
        host: &host,
        date: &date,
        body: &body,
        content_type: "application/json",
    });
    let mut req = http_client(super::client::tls_config()?)?
        .post(url)
        .header("accept", "application/json");
    for (k, v) in &signed.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.body(body).send().await.map_err(transport)?;
    if !resp.status().is_success() {
        return Err(service_error("X.509 federation", resp).await);
    }
    #[derive(Deserialize)]
    struct Answer {
        token: String,
    }
    let a: Answer = resp
        .json()
        .await
        .map_err(|e| OciError::Decode(format!("X.509 federation answer: {e}")))?;
    Ok(a.token)
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
