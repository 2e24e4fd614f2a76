//! The agent's HTTP API (axum): reads batched into a constant number of Slurm commands,
//! writes limited to what this operator owns, every Slurm error passed back typed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use futures::StreamExt;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use subtle::ConstantTimeEq;

use super::api::{
    CheckReport, CheckRequest, CreateReservation, Done, DrainRequest, ErrorBody, PartitionSnapshot,
    RebootRequest, UpdateReservation,
};
use super::checks::{self, Checks};
use super::commands::{self, Argv, NewReservation, ReservationChange};
use super::metrics::{Metrics, Outcome};
use super::runner::{CommandOutput, Runner, SlurmError};
use super::snapshot::{self, Inputs, PartitionCache};
use super::validate::{self, Field, ValidationError};
use crate::plan::HealthResult;
use crate::slurm::parse::{self, ParseError};
use crate::slurm::{Job, Node};

/// Longest reservation the agent creates: 366 days, in minutes.
pub const MAX_DURATION_MINUTES: u64 = 366 * 24 * 60;

/// Largest request body read; the agent's requests are a few hundred bytes. Larger ones
/// are refused with 413 before any of it is parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Default of [`Config::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Slurm's own reason for a node whose reboot did not complete; it replaces ours, and a
/// retried reboot may proceed over it.
const SLURM_REBOOT_TIMED_OUT: &str = "reboot timed out";

/// What the agent serves and owns.
#[derive(Clone)]
pub struct Config {
    /// Bearer token every request except `/healthz` must carry.
    pub token: String,
    /// Reservations named `<prefix>-…` are ours; no other is created, changed or deleted.
    pub reservation_prefix: String,
    /// Drains whose reason starts with this (trailing space ignored) are ours; reasons
    /// we set get it.
    pub reason_prefix: String,
    /// Site reboot command (argv template with `{node}`) instead of `scontrol reboot`.
    pub reboot_command: Option<Vec<String>>,
    /// Health-check command (argv template with `{node}`); exit 0 is healthy.
    pub health_command: Option<Vec<String>>,
    /// The named checks `POST /v1/nodes/{node}/checks/{name}` may run; no other.
    pub checks: Arc<Checks>,
    /// Jobs with these QOS are preemptable, whatever their partition says.
    pub preemptable_qos: Vec<String>,
    /// How long snapshots reuse `scontrol show partition` output; zero: never.
    pub partition_cache_ttl: Duration,
    /// The zone Slurm prints and reads local times in.
    pub tz: TimeZone,
    /// A request body not received within this time is answered 408 (the listener
    /// also drops connections whose headers take longer).
    pub request_timeout: Duration,
}

impl Config {
    /// Defaults for everything but the token: prefixes `slurm-maint`, no site commands,
    /// partitions cached for 5 minutes, the system time zone.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            reservation_prefix: "slurm-maint".into(),
            reason_prefix: "slurm-maint: ".into(),
            reboot_command: None,
            health_command: None,
            checks: Arc::default(),
            preemptable_qos: vec![],
            partition_cache_ttl: snapshot::DEFAULT_PARTITION_TTL,
            tz: TimeZone::system(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// A request that failed; rendered as `{"error": …, "code": …}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnknownCheck(String),
    #[error("{0}")]
    NotOwned(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error(transparent)]
    Slurm(#[from] SlurmError),
    #[error("unreadable Slurm output: {0}")]
    Output(#[from] ParseError),
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self::BadRequest(e.body_text())
    }
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            Self::Invalid(e) if e.field().is_name() => (StatusCode::BAD_REQUEST, "InvalidName"),
            Self::Invalid(_) => (StatusCode::BAD_REQUEST, "InvalidValue"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            Self::UnknownCheck(_) => (StatusCode::BAD_REQUEST, "UnknownCheck"),
            Self::NotOwned(_) => (StatusCode::FORBIDDEN, "NotOwned"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Self::Slurm(e) if e.is_not_found() => (StatusCode::NOT_FOUND, "NotFound"),
            Self::Slurm(e) if e.is_already_exists() => (StatusCode::CONFLICT, "AlreadyExists"),
            Self::Slurm(SlurmError::Timeout { .. }) => (StatusCode::BAD_GATEWAY, "SlurmTimeout"),
            Self::Slurm(SlurmError::Spawn { .. }) => (StatusCode::BAD_GATEWAY, "SlurmUnavailable"),
            Self::Slurm(SlurmError::Failed { .. }) => (StatusCode::BAD_GATEWAY, "SlurmFailed"),
            Self::Output(_) => (StatusCode::BAD_GATEWAY, "SlurmOutput"),
        }
    }

    fn conflict(code: &'static str, message: String) -> Self {
        Self::Conflict { code, message }
    }
}

fn error_response(status: StatusCode, code: &str, error: String) -> Response {
    let body = ErrorBody {
        error,
        code: code.into(),
    };
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(error = %self, code, "request failed");
        }
        let mut response = error_response(status, code, self.to_string());
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The agent: configuration, a runner for commands, metrics, cached partitions.
struct Agent {
    config: Config,
    runner: Arc<dyn Runner>,
    metrics: Metrics,
    partitions: PartitionCache,
}

type Shared = Arc<Agent>;
type ApiResult<T> = Result<T, ApiError>;

impl Agent {
    /// Run a command, recording it in the metrics.
    async fn run(&self, argv: &[String]) -> Result<CommandOutput, SlurmError> {
        let started = Instant::now();
        let result = self.runner.run(argv).await;
        self.metrics.observe(
            &commands::verb(argv),
            Outcome::of(&result),
            started.elapsed().as_secs_f64(),
        );
        result
    }

    /// Run a command with its own timeout, recording it in the metrics.
    async fn run_for(
        &self,
        argv: &[String],
        timeout: Duration,
    ) -> Result<CommandOutput, SlurmError> {
        let started = Instant::now();
        let result = self.runner.run_for(argv, timeout).await;
        self.metrics.observe(
            &commands::verb(argv),
            Outcome::of(&result),
            started.elapsed().as_secs_f64(),
        );
        result
    }

    /// Run a Slurm command; its stdout, or its error.
    async fn slurm(&self, argv: Argv) -> Result<String, SlurmError> {
        self.run(&argv).await?.into_result(&argv)
    }

    /// One node, with one `scontrol show node -o <node>`.
    async fn node(&self, node: &str) -> ApiResult<Node> {
        let out = self.slurm(commands::show_node(node)).await?;
        parse::scontrol_nodes(&out, &self.config.tz)?
            .into_iter()
            .find(|n| n.name == node)
            .ok_or_else(|| ApiError::NotFound(format!("node {node} not found")))
    }

    fn is_our_reason(&self, reason: &str) -> bool {
        reason.starts_with(self.config.reason_prefix.trim_end())
    }

    /// A validated reason carrying our prefix.
    fn our_reason(&self, reason: &str) -> ApiResult<String> {
        validate::reason(reason)?;
        let reason = if self.is_our_reason(reason) {
            reason.to_string()
        } else {
            format!("{}{reason}", self.config.reason_prefix)
        };
        validate::reason(&reason)?;
        Ok(reason)
    }

    /// Refuse to act on a node someone else drained: our action would replace their
    /// reason, and later let us resume it.
    fn check_foreign_drain(&self, node: &Node, action: &str) -> ApiResult<()> {
        let reason = node.reason.as_deref().unwrap_or("");
        if node.state.is_drained()
            && !self.is_our_reason(reason)
            && !reason.contains(SLURM_REBOOT_TIMED_OUT)
        {
            return Err(ApiError::conflict(
                "ForeignDrain",
                format!(
                    "node {} is {} with reason {reason:?}, not set by slurm-maint; not {action}",
                    node.name, node.state
                ),
            ));
        }
        Ok(())
    }

    /// Only reservations named `<prefix>-…` are ours.
    fn check_owned(&self, name: &str) -> ApiResult<()> {
        let prefix = self.config.reservation_prefix.trim_end_matches('-');
        if name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('-'))
        {
            Ok(())
        } else {
            Err(ApiError::NotOwned(format!(
                "reservation {name} is not owned by slurm-maint (its names start with {prefix}-); left alone"
            )))
        }
    }

    /// Jobs with a configured preemptable QOS are preemptable.
    fn with_qos_preemption(&self, mut job: Job) -> Job {
        if let Some(qos) = &job.qos {
            job.preemptable |= self.config.preemptable_qos.contains(qos);
        }
        job
    }
}

/// The agent's router: `/healthz` (no token), `/metrics` and `/v1/…` (bearer token).
pub fn router(config: Config, runner: Arc<dyn Runner>) -> Router {
    let agent: Shared = Arc::new(Agent {
        partitions: PartitionCache::new(config.partition_cache_ttl),
        config,
        runner,
        metrics: Metrics::new(),
    });
    let protected = Router::new()
        .route("/v1/partitions/{partition}/snapshot", get(snapshot))
        .route("/v1/reservations", post(create_reservation))
        .route(
            "/v1/reservations/{name}",
            patch(update_reservation).delete(delete_reservation),
        )
        .route("/v1/nodes/{node}/drain", post(drain))
        .route("/v1/nodes/{node}/resume", post(resume))
        .route("/v1/nodes/{node}/clear-reason", post(clear_reason))
        .route("/v1/nodes/{node}/reboot", post(reboot))
        .route("/v1/nodes/{node}/health", post(health))
        .route("/v1/nodes/{node}/checks/{name}", post(run_check))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(agent.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .layer(middleware::from_fn_with_state(agent.clone(), read_body))
        .with_state(agent)
}

/// Reads the whole body before any handler runs: at most [`MAX_BODY_BYTES`] (413
/// beyond), within [`Config::request_timeout`] (408 after), so a slow or huge upload
/// holds nothing but its own connection.
async fn read_body(State(agent): State<Shared>, request: Request, next: Next) -> Response {
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let read = async {
        let mut stream = body.into_data_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                return Ok(None);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok::<_, axum::Error>(Some(bytes))
    };
    let timeout = agent.config.request_timeout;
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(Some(bytes))) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Ok(None)) => too_large(),
        Ok(Err(e)) => error_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("cannot read the request body: {e}"),
        ),
        Err(_) => error_response(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            format!(
                "request body not received within {}s",
                timeout.as_secs_f64()
            ),
        ),
    }
}

async fn require_token(State(agent): State<Shared>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if token_matches(token, &agent.config.token) => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// Whether a presented bearer token (surrounding whitespace ignored) is the agent's: in
/// time independent of where the two differ, so timing tells nothing about the token's
/// bytes (only a different length returns early).
pub fn token_matches(presented: &str, token: &str) -> bool {
    bool::from(presented.trim().as_bytes().ct_eq(token.as_bytes()))
}

async fn healthz(State(agent): State<Shared>) -> Response {
    let problem = match agent.run(&commands::ping()).await {
        Ok(out) if out.success() && !out.stdout.contains("DOWN") => {
            let message = out.stdout.trim().to_string();
            return Json(serde_json::json!({ "ok": true, "message": message })).into_response();
        }
        Ok(out) => [out.stdout.trim(), out.stderr.trim()]
            .join(" ")
            .trim()
            .to_string(),
        Err(e) => e.to_string(),
    };
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "SlurmctldDown",
        format!("slurmctld is not reachable: {problem}"),
    )
}

async fn metrics(State(agent): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        agent.metrics.encode(),
    )
        .into_response()
}

/// Three commands whatever the node count (nodes, jobs, reservations), and the partitions
/// when the cache cannot vouch for them.
async fn snapshot(
    State(agent): State<Shared>,
    Path(partition): Path<String>,
) -> ApiResult<Json<PartitionSnapshot>> {
    let partition = validate::partition_name(&partition)?;
    let inputs = Inputs {
        partition,
        tz: &agent.config.tz,
        preemptable_qos: &agent.config.preemptable_qos,
    };
    snapshot::take(|argv| agent.slurm(argv), &agent.partitions, &inputs)
        .await
        .map(Json)
}

/// Node names from names or hostlist expressions, sorted and deduplicated.
fn node_list(items: &[String]) -> Result<Vec<String>, ValidationError> {
    let mut nodes = vec![];
    for item in items {
        nodes.extend(validate::hostlist(item)?);
    }
    if nodes.is_empty() {
        return Err(ValidationError::Empty {
            field: Field::Hostlist,
        });
    }
    nodes.sort();
    nodes.dedup();
    Ok(nodes)
}

fn names(
    items: &[String],
    check: fn(&str) -> Result<&str, ValidationError>,
) -> Result<Vec<String>, ValidationError> {
    items.iter().map(|i| check(i).map(String::from)).collect()
}

fn duration_minutes(minutes: u64) -> ApiResult<u64> {
    if (1..=MAX_DURATION_MINUTES).contains(&minutes) {
        Ok(minutes)
    } else {
        Err(ApiError::BadRequest(format!(
            "durationMinutes must be between 1 and {MAX_DURATION_MINUTES}, got {minutes}"
        )))
    }
}

fn done(changed: bool, message: impl Into<String>) -> Json<Done> {
    Json(Done {
        changed,
        message: message.into().trim().to_string(),
    })
}

async fn create_reservation(
    State(agent): State<Shared>,
    body: Result<Json<CreateReservation>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Done>)> {
    let Json(req) = body?;
    let name = validate::reservation_name(&req.name)?;
    agent.check_owned(name)?;
    let flags: Vec<String> = req.flags.iter().map(|f| f.to_ascii_uppercase()).collect();
    let reservation = NewReservation {
        name: name.to_string(),
        start: req.start.not_before(Timestamp::now()),
        duration_minutes: duration_minutes(req.duration_minutes)?,
        nodes: node_list(&req.nodes)?,
        users: names(&req.users, validate::user_name)?,
        accounts: names(&req.accounts, validate::account_name)?,
        flags: names(&flags, validate::flag)?,
    };
    if reservation.users.is_empty() && reservation.accounts.is_empty() {
        return Err(ApiError::BadRequest(
            "a reservation needs at least one user or account".into(),
        ));
    }
    let argv = commands::create_reservation(&reservation, &agent.config.tz);
    let out = agent.slurm(argv).await?;
    Ok((StatusCode::CREATED, done(true, out)))
}

async fn update_reservation(
    State(agent): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<UpdateReservation>, JsonRejection>,
) -> ApiResult<Json<Done>> {
    let name = validate::reservation_name(&name)?;
    agent.check_owned(name)?;
    let Json(req) = body?;
    let change = ReservationChange {
        start: req.start.map(|s| s.not_before(Timestamp::now())),
        duration_minutes: req.duration_minutes.map(duration_minutes).transpose()?,
        nodes: req.nodes.as_deref().map(node_list).transpose()?,
    };
    if change == ReservationChange::default() {
        return Err(ApiError::BadRequest(
            "nothing to change: give start, durationMinutes or nodes".into(),
        ));
    }
    let out = agent
        .slurm(commands::update_reservation(
            name,
            &change,
            &agent.config.tz,
        ))
        .await?;
    Ok(done(true, out))
}

async fn delete_reservation(
    State(agent): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Json<Done>> {
    let name = validate::reservation_name(&name)?;
    agent.check_owned(name)?;
    let out = agent.slurm(commands::delete_reservation(name)).await?;
    Ok(done(true, out))
}

async fn drain(
    State(agent): State<Shared>,
    Path(node): Path<String>,
    body: Result<Json<DrainRequest>, JsonRejection>,
) -> ApiResult<Json<Done>> {
    let node = validate::node_name(&node)?;
    let Json(req) = body?;
    let reason = agent.our_reason(&req.reason)?;
    agent.check_foreign_drain(&agent.node(node).await?, "drained")?;
    let out = agent.slurm(commands::drain_node(node, &reason)).await?;
    Ok(done(true, out))
}

/// Only drains we set are cleared: never other people's, and never a node Slurm itself
/// took out (DOWN, FAIL, NOT_RESPONDING), whatever its reason says: an old reason of ours
/// can outlive our work (Slurm 24.11 keeps it), so the prefix alone proves nothing.
async fn resume(State(agent): State<Shared>, Path(node): Path<String>) -> ApiResult<Json<Done>> {
    let node = validate::node_name(&node)?;
    let current = agent.node(node).await?;
    if !current.state.is_drained() && !current.state.is_down() {
        return Ok(done(
            false,
            format!(
                "node {node} is {}, not drained or down; nothing to resume",
                current.state
            ),
        ));
    }
    if taken_out_by_slurm(&current.state) {
        return Err(ApiError::conflict(
            "DownBySlurm",
            format!(
                "node {node} is {}: Slurm took it out of service (reason {:?}); not resumed",
                current.state,
                current.reason.as_deref().unwrap_or("none")
            ),
        ));
    }
    match current.reason.as_deref() {
        Some(r) if agent.is_our_reason(r) => {}
        other => {
            return Err(ApiError::conflict(
                "ForeignDrain",
                format!(
                    "node {node} is {} with reason {:?}, not set by slurm-maint; not resumed",
                    current.state,
                    other.unwrap_or("none")
                ),
            ));
        }
    }
    let out = agent.slurm(commands::resume_node(node)).await?;
    Ok(done(true, out))
}

/// DOWN, FAIL/FAILING or NOT_RESPONDING: states Slurm sets itself (or an admin with DOWN).
fn taken_out_by_slurm(state: &crate::slurm::NodeState) -> bool {
    state.base == "DOWN"
        || ["FAIL", "FAILING", "NOT_RESPONDING"]
            .iter()
            .any(|f| state.has(f))
}

/// Replaces our reason on a node back in service with [`commands::DONE_REASON`]
/// (Slurm cannot empty one); another reason, or a node still drained or down, is refused
/// and left as it is.
async fn clear_reason(
    State(agent): State<Shared>,
    Path(node): Path<String>,
) -> ApiResult<Json<Done>> {
    let node = validate::node_name(&node)?;
    let current = agent.node(node).await?;
    let Some(reason) = current.reason.as_deref() else {
        return Ok(done(
            false,
            format!("node {node} has no reason; nothing to clear"),
        ));
    };
    if !agent.is_our_reason(reason) {
        return Err(ApiError::conflict(
            "ForeignReason",
            format!("node {node} has reason {reason:?}, not set by slurm-maint; left alone"),
        ));
    }
    if current.state.is_drained() || current.state.is_down() || current.state.is_rebooting() {
        return Err(ApiError::conflict(
            "NotInService",
            format!(
                "node {node} is {}; its reason stays while it is out of service",
                current.state
            ),
        ));
    }
    let out = agent.slurm(commands::clear_reason(node)).await?;
    Ok(done(true, out))
}

async fn reboot(
    State(agent): State<Shared>,
    Path(node): Path<String>,
    body: Result<Json<RebootRequest>, JsonRejection>,
) -> ApiResult<Json<Done>> {
    let node = validate::node_name(&node)?;
    let Json(req) = body?;
    let reason = agent.our_reason(&req.reason)?;
    agent.check_foreign_drain(&agent.node(node).await?, "rebooted")?;
    let argv = match &agent.config.reboot_command {
        Some(template) => commands::site_command(template, node),
        None => commands::reboot_node(node, &reason, req.next_state),
    };
    let out = agent.slurm(argv).await?;
    Ok(done(true, out))
}

/// Runs the configured health check; without one, a node is healthy when Slurm has it
/// in service.
async fn health(
    State(agent): State<Shared>,
    Path(node): Path<String>,
) -> ApiResult<Json<HealthResult>> {
    let node = validate::node_name(&node)?;
    let Some(template) = &agent.config.health_command else {
        let current = agent.node(node).await?;
        let healthy = current.state.in_service();
        let reason = current
            .reason
            .map(|r| format!(", reason: {r}"))
            .unwrap_or_default();
        return Ok(Json(HealthResult {
            healthy,
            message: format!(
                "no health command configured; node {node} is {} per Slurm ({}{reason})",
                current.state,
                if healthy {
                    "in service"
                } else {
                    "not in service"
                },
            ),
            checks: vec![],
        }));
    };
    let (healthy, message) = match agent.run(&commands::site_command(template, node)).await {
        Ok(out) => {
            let text = [out.stdout.trim(), out.stderr.trim()]
                .into_iter()
                .find(|t| !t.is_empty())
                .map(String::from);
            let message = match (out.success(), text) {
                (_, Some(t)) => t,
                (true, None) => "health check passed".into(),
                (false, None) => format!("health check failed: exit code {:?}", out.code),
            };
            (out.success(), message)
        }
        Err(e @ SlurmError::Timeout { .. }) => (false, e.to_string()),
        Err(e) => return Err(e.into()),
    };
    Ok(Json(HealthResult {
        healthy,
        message: validate::boring_text(&message, 200),
        checks: vec![],
    }))
}

/// Runs one check of the checks file. Only configured names run: any other is refused
/// with 400 before anything starts.
async fn run_check(
    State(agent): State<Shared>,
    Path((node, name)): Path<(String, String)>,
    body: Result<Option<Json<CheckRequest>>, JsonRejection>,
) -> ApiResult<Json<CheckReport>> {
    let node = validate::node_name(&node)?;
    let name = validate::check_name(&name)?;
    let req = body?.map(|Json(r)| r).unwrap_or_default();
    let fault = req.fault.as_deref().map(validate::fault_code).transpose()?;
    let Some(check) = agent.config.checks.get(name) else {
        let known: Vec<&str> = agent.config.checks.names().collect();
        return Err(ApiError::UnknownCheck(format!(
            "no check named {name} is configured on this agent (configured: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    let report = checks::run(check, node, fault, |argv, timeout| {
        let agent = agent.clone();
        async move { agent.run_for(&argv, timeout).await }
    })
    .await;
    agent.metrics.check(name, report.passed);
    tracing::info!(node, check = name, fault, passed = report.passed, attempts = report.attempts, duration_ms = report.duration_ms, message = %report.message, "check");
    Ok(Json(report))
}

/// Cancels a job only if, checked now, it is active and preemptable.
async fn cancel_job(State(agent): State<Shared>, Path(id): Path<String>) -> ApiResult<Json<Done>> {
    let id = validate::job_id(&id)?;
    let (job, partitions) = tokio::try_join!(
        agent.slurm(commands::show_job(id)),
        agent.slurm(commands::show_partitions()),
    )?;
    let partitions = agent
        .partitions
        .put(parse::scontrol_partitions(&partitions)?);
    let preempting = parse::preempting_partitions(&partitions);
    let job = parse::scontrol_jobs(&job, &agent.config.tz, &preempting)?
        .into_iter()
        .find(|j| j.id == id)
        .map(|j| agent.with_qos_preemption(j))
        .ok_or_else(|| ApiError::NotFound(format!("job {id} not found")))?;
    if !job.is_active() {
        return Ok(done(
            false,
            format!("job {id} is {}, not running; nothing cancelled", job.state),
        ));
    }
    if !job.preemptable {
        return Err(ApiError::conflict(
            "NotPreemptable",
            format!("job {id} is not preemptable"),
        ));
    }
    let out = agent.slurm(commands::cancel_job(id)).await?;
    Ok(done(true, format!("job {id} cancelled {out}")))
}

#[cfg(test)]
mod tests;
