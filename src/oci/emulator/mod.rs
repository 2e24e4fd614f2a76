//! An emulator of the OCI Compute (instance maintenance events, instances), Work
//! Requests and Identity (tenancy, compartments) APIs, on loopback, for tests, the demo
//! and developers (docs/oci-emulator.md). Its answers follow OCI's API reference and the
//! official SDK's models: required fields always present, tag maps `{}` when empty, the
//! documented default sorts, OCI's error codes with `{"code","message"}` and an
//! `opc-request-id`; where the reference is silent, the code says what it chose.
//!
//! Every API request must carry a valid draft-cavage signature from one of the
//! configured public keys, or from the session key of an unexpired `ST$<token>` the
//! emulator issued itself (see [`auth`]: OKE workload identity, instance metadata and
//! X.509 federation); 401 NotAuthenticated otherwise, also for a `date` more than
//! `maxClockSkewSeconds` off. Rescheduling an event creates a work request that goes
//! ACCEPTED → IN_PROGRESS → SUCCEEDED; the event then goes SCHEDULED → STARTED →
//! PROCESSING → SUCCEEDED (or the scripted FAILED/CANCELED) on the emulator's clock,
//! which runs with real time and can be advanced (`POST /_emulator/advance?seconds=N`).

pub mod auth;
pub mod scenario;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::{SignedDuration, Timestamp};
use rsa::RsaPublicKey;

use super::model::*;
use super::retry::Jitter;
use super::sign;
pub use auth::{InstanceIdentity, TokenAuth};
pub use scenario::{Faults, Generate, Scenario, ScenarioCompartment, ScenarioEvent};

/// Where the emulator's clock starts from: real time, or a simulation's virtual clock.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The emulator's clock: a base clock plus a manual offset.
struct EmuClock {
    base: Clock,
    offset: Mutex<SignedDuration>,
}

impl EmuClock {
    /// Now, to the millisecond: OCI's timestamps have millisecond precision, and a client
    /// (the Python SDK's datetime) may keep no more than microseconds.
    fn now(&self) -> Timestamp {
        let t = (self.base)() + *self.offset.lock().unwrap();
        Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t)
    }
}

#[derive(Debug)]
struct EventState {
    event: InstanceMaintenanceEvent,
    version: u64,
    outcome: String,
    work_request_outcome: String,
    /// When the maintenance starts (set when a reschedule's work request succeeds, or
    /// at the window with `autoStartAtWindow`).
    start_at: Option<Timestamp>,
    /// Work request of the last reschedule, not yet applied, and the window before it.
    pending_wr: Option<String>,
    window_before: Option<Timestamp>,
}

impl EventState {
    fn etag(&self) -> String {
        format!("\"{:x}-{}\"", fnv(&self.event.id), self.version)
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Fills in what OCI always sends and a scenario may leave out (see
/// docs/oci-emulator.md for the defaults).
fn complete_event(e: &mut InstanceMaintenanceEvent, now: Timestamp) {
    let fill = |v: &mut String, d: &str| {
        if v.is_empty() {
            *v = d.into();
        }
    };
    fill(&mut e.lifecycle_state, "SCHEDULED");
    fill(&mut e.created_by, "SYSTEM");
    fill(&mut e.maintenance_category, "FLEXIBLE");
    fill(&mut e.maintenance_reason, "HARDWARE_REPLACEMENT");
    fill(&mut e.instance_action, "REBOOT_MIGRATION");
    e.time_created.get_or_insert(now);
    e.time_window_start
        .get_or_insert(now + SignedDuration::from_hours(24 * 7));
    if e.description.is_none() {
        e.description = Some(format!(
            "{} maintenance ({}) of instance {}: {}",
            e.maintenance_category, e.maintenance_reason, e.instance_id, e.instance_action
        ));
    }
}

/// Fills in the fields an `Instance` always carries.
fn complete_instance(i: &mut Instance, region: &str, now: Timestamp) {
    if i.region.is_empty() {
        i.region = region.into();
    }
    if i.lifecycle_state.is_empty() {
        i.lifecycle_state = "RUNNING".into();
    }
    if i.availability_domain.is_empty() {
        i.availability_domain = "AD-1".into();
    }
    if i.shape.is_empty() {
        i.shape = "BM.GPU.H100.8".into();
    }
    i.time_created.get_or_insert(now);
}

#[derive(Debug)]
struct WrState {
    wr: WorkRequest,
    created: Timestamp,
    outcome: String,
    event_id: Option<String>,
    errors: Vec<WorkRequestError>,
    logs: Vec<WorkRequestLogEntry>,
}

#[derive(Debug)]
struct Cached {
    key: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

#[derive(Debug, Default)]
struct EmuState {
    compartments: Vec<Compartment>,
    instances: BTreeMap<String, Instance>,
    events: Vec<EventState>,
    work_requests: BTreeMap<String, WrState>,
    retry_tokens: HashMap<String, Cached>,
    seq: u64,
    requests: u64,
    /// Requests answered with an error (signature, fault injection, API checks).
    refused: u64,
    /// The first [`MAX_REFUSALS_KEPT`] of them, as `METHOD path: status code: message`.
    refusals: Vec<String>,
}

const MAX_REFUSALS_KEPT: usize = 1000;

struct Shared {
    scenario: Scenario,
    /// The emulator's time when it was made.
    started: Timestamp,
    clock: EmuClock,
    keys: Vec<(String, RsaPublicKey)>,
    faults: Mutex<Faults>,
    dice: Jitter,
    state: Mutex<EmuState>,
    tokens: auth::Tokens,
}

/// A running (or ready to run) emulator. Cheap to clone.
#[derive(Clone)]
pub struct Emulator {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("tenancy", &self.shared.scenario.tenancy)
            .finish_non_exhaustive()
    }
}

/// Why an API request was refused, carried on the response to the request log.
#[derive(Clone, Debug)]
struct Refusal {
    code: String,
    message: String,
}

/// An API error answer: `{"code","message"}` (the `opc-request-id` header is added to
/// every answer by [`request_log`]).
fn api_error(status: u16, code: &str, message: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = message.into();
    let mut r = (
        status,
        axum::Json(serde_json::json!({"code": code, "message": message})),
    )
        .into_response();
    r.extensions_mut().insert(Refusal {
        code: code.into(),
        message,
    });
    r
}

/// 400 InvalidParameter for a query parameter outside its enum.
fn check_enum(q: &HashMap<String, String>, k: &str, allowed: &[&str]) -> Result<(), Box<Response>> {
    match q.get(k) {
        Some(v) if !allowed.contains(&v.as_str()) => Err(Box::new(api_error(
            400,
            "InvalidParameter",
            format!("{k} {v} is not one of {}", allowed.join(", ")),
        ))),
        _ => Ok(()),
    }
}

/// The required `compartmentId` query parameter (400 MissingParameter without it).
fn required<'q>(q: &'q HashMap<String, String>, k: &str) -> Result<&'q String, Box<Response>> {
    q.get(k).ok_or_else(|| {
        Box::new(api_error(
            400,
            "MissingParameter",
            format!("{k} is required"),
        ))
    })
}

/// `sortOrder`, or `default` without one.
fn descending(q: &HashMap<String, String>, default_desc: bool) -> Result<bool, Box<Response>> {
    check_enum(q, "sortOrder", &["ASC", "DESC"])?;
    Ok(q.get("sortOrder").map_or(default_desc, |o| o == "DESC"))
}

fn not_found(what: &str, id: &str) -> Response {
    api_error(
        404,
        "NotAuthorizedOrNotFound",
        format!("{what} {id} not found or not authorized"),
    )
}

fn json_ok<T: serde::Serialize>(status: u16, value: &T, headers: &[(String, String)]) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        axum::Json(value),
    )
        .into_response();
    for (k, v) in headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::try_from(k.as_str()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(n, v);
        }
    }
    r
}

type Q = Query<HashMap<String, String>>;

impl Emulator {
    /// An emulator of `scenario` accepting requests signed by any of `keys`.
    pub fn new(scenario: Scenario, keys: Vec<RsaPublicKey>) -> Self {
        Self::with_tokens(scenario, keys, TokenAuth::default())
            .expect("no token services: nothing to parse")
    }

    /// An emulator of `scenario` accepting requests signed by any of `keys` or by the
    /// session tokens it issues through the services of `tokens`.
    pub fn with_tokens(
        scenario: Scenario,
        keys: Vec<RsaPublicKey>,
        tokens: TokenAuth,
    ) -> Result<Self, String> {
        Self::build(scenario, keys, tokens, Arc::new(Timestamp::now))
    }

    /// An emulator of `scenario` whose clock is `clock` (a simulation's virtual clock):
    /// it moves only when that clock does (and with [`Self::set_now`], [`Self::advance`]),
    /// so the emulator and a controller on the same clock always agree on the time.
    pub fn with_clock(scenario: Scenario, keys: Vec<RsaPublicKey>, clock: Clock) -> Self {
        Self::build(scenario, keys, TokenAuth::default(), clock)
            .expect("no token services: nothing to parse")
    }

    fn build(
        mut scenario: Scenario,
        keys: Vec<RsaPublicKey>,
        tokens: TokenAuth,
        clock: Clock,
    ) -> Result<Self, String> {
        let tokens = auth::Tokens::new(tokens)?;
        let clock = EmuClock {
            base: clock,
            offset: Mutex::new(SignedDuration::ZERO),
        };
        let now = clock.now();
        scenario.expand(now);
        let mut st = EmuState::default();
        for c in &scenario.compartments {
            st.compartments.push(Compartment {
                id: c.id.clone(),
                compartment_id: c.parent.clone().unwrap_or_else(|| scenario.tenancy.clone()),
                name: c.name.clone(),
                description: c
                    .description
                    .clone()
                    .unwrap_or_else(|| format!("compartment {}", c.name)),
                time_created: Some(c.time_created.unwrap_or(now)),
                lifecycle_state: c.lifecycle_state.clone(),
                ..Compartment::default()
            });
        }
        for i in &scenario.instances {
            let mut i = i.clone();
            complete_instance(&mut i, &scenario.region, now);
            st.instances.insert(i.id.clone(), i);
        }
        for e in &scenario.events {
            let mut event = e.event.clone();
            complete_event(&mut event, now);
            let start_at = (scenario.auto_start_at_window && event.lifecycle_state == "SCHEDULED")
                .then_some(event.time_window_start)
                .flatten();
            st.events.push(EventState {
                event,
                version: 1,
                outcome: e.outcome.clone(),
                work_request_outcome: e.work_request_outcome.clone(),
                start_at,
                pending_wr: None,
                window_before: None,
            });
        }
        let keys = keys
            .into_iter()
            .map(|k| (sign::fingerprint(&k), k))
            .collect();
        let faults = scenario.faults.clone();
        let dice = Jitter::seeded(faults.seed);
        Ok(Self {
            shared: Arc::new(Shared {
                scenario,
                started: now,
                clock,
                keys,
                faults: Mutex::new(faults),
                dice,
                state: Mutex::new(st),
                tokens,
            }),
        })
    }

    /// Session tokens issued so far (both services).
    pub fn tokens_issued(&self) -> u64 {
        self.shared
            .tokens
            .issued
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The tenancy OCID.
    pub fn tenancy(&self) -> &str {
        &self.shared.scenario.tenancy
    }

    /// The emulator's current time.
    pub fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    /// Sets the emulator's clock to `t` (a simulation's virtual time), backwards too; it
    /// keeps running from there. Request `date` headers are still checked against the
    /// real clock.
    pub fn set_now(&self, t: Timestamp) {
        let shift = t.duration_since(self.shared.clock.now());
        *self.shared.clock.offset.lock().unwrap() += shift;
    }

    /// Moves the emulator's clock forward.
    pub fn advance(&self, d: Duration) {
        let d = SignedDuration::try_from(d).unwrap_or_default();
        *self.shared.clock.offset.lock().unwrap() += d;
    }

    /// Replaces the fault injection settings.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap() = faults;
    }

    /// API requests received (after signature checks and fault injection).
    pub fn requests_served(&self) -> u64 {
        self.shared.state.lock().unwrap().requests
    }

    /// Requests answered with an error so far, and the first ones as
    /// `METHOD path: status code: message`.
    pub fn refusals(&self) -> (u64, Vec<String>) {
        let st = self.shared.state.lock().unwrap();
        (st.refused, st.refusals.clone())
    }

    /// The current state of an event (as a GET would show it).
    pub fn event(&self, id: &str) -> Option<InstanceMaintenanceEvent> {
        let mut st = self.shared.state.lock().unwrap();
        self.shared.tick(&mut st);
        st.events
            .iter()
            .find(|e| e.event.id == id)
            .map(|e| e.event.clone())
    }

    /// The router: API under `/20160918`, control under `/_emulator`.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/20160918/instanceMaintenanceEvents", get(list_events))
            .route(
                "/20160918/instanceMaintenanceEvents/{id}",
                get(get_event).put(update_event),
            )
            .route("/20160918/instances", get(list_instances))
            .route(
                "/20160918/instances/{id}",
                get(get_instance).post(instance_action),
            )
            .route("/20160918/workRequests/{id}", get(get_work_request))
            .route(
                "/20160918/workRequests/{id}/errors",
                get(work_request_errors),
            )
            .route("/20160918/workRequests/{id}/logs", get(work_request_logs))
            .route("/20160918/compartments", get(list_compartments))
            .route("/20160918/compartments/{id}", get(get_compartment))
            .route("/20160918/tenancies/{id}", get(get_tenancy))
            .layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                authenticate,
            ));
        Router::new()
            .route(
                "/resourcePrincipalSessionTokens",
                post(auth::resource_principal_session_token),
            )
            .route("/opc/v2/instance/region", get(auth::imds_region))
            .route("/opc/v2/instance/regionInfo", get(auth::imds_region_info))
            .route("/opc/v2/identity/cert.pem", get(auth::imds_cert))
            .route("/opc/v2/identity/key.pem", get(auth::imds_key))
            .route(
                "/opc/v2/identity/intermediate.pem",
                get(auth::imds_intermediate),
            )
            .route("/v1/x509", post(auth::x509_federation))
            .route("/_emulator/advance", post(advance))
            .route("/_emulator/state", get(dump_state))
            .merge(api)
            // OCI's API errors: 404 NotFound when no operation has this path, 405
            // MethodNotAllowed when the path has no such method.
            .fallback(|req: Request| async move {
                api_error(
                    404,
                    "NotFound",
                    format!("no operation at {} {}", req.method(), req.uri().path()),
                )
            })
            .method_not_allowed_fallback(|req: Request| async move {
                api_error(
                    405,
                    "MethodNotAllowed",
                    format!("{} is not supported on {}", req.method(), req.uri().path()),
                )
            })
            .layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                request_log,
            ))
            .with_state(self.shared.clone())
    }

    /// Serves on `listener` until the task is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    /// Binds `addr` (port 0 for any), serves in a task, returns the address.
    pub async fn start(
        &self,
        addr: &str,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let me = self.clone();
        Ok((local, tokio::spawn(me.serve(listener))))
    }
}

impl Shared {
    fn step(&self) -> SignedDuration {
        SignedDuration::try_from_secs_f64(self.scenario.step_seconds.max(0.0)).unwrap_or_default()
    }

    fn next_id(&self, st: &mut EmuState, kind: &str) -> String {
        st.seq += 1;
        format!("ocid1.{kind}.oc1..emu{:06}", st.seq)
    }

    /// Brings work requests and events up to the clock.
    fn tick(&self, st: &mut EmuState) {
        let now = self.clock.now();
        let step = self.step();
        let mut finished: Vec<(String, String, Timestamp)> = vec![];
        for w in st.work_requests.values_mut() {
            let t1 = w.created + step;
            let t2 = w.created + step + step;
            let before = w.wr.status.clone();
            if now >= t2 {
                w.wr.status = w.outcome.clone();
                w.wr.percent_complete = 100.0;
                w.wr.time_started = Some(t1);
                w.wr.time_finished = Some(t2);
            } else if now >= t1 {
                w.wr.status = "IN_PROGRESS".into();
                w.wr.percent_complete = 50.0;
                w.wr.time_started = Some(t1);
            }
            if before != w.wr.status {
                w.logs.push(WorkRequestLogEntry {
                    message: format!("work request {}", w.wr.status),
                    timestamp: now,
                });
                if w.wr.status == "FAILED" {
                    w.errors.push(WorkRequestError {
                        code: "InternalError".into(),
                        message: "the maintenance could not be rescheduled".into(),
                        timestamp: now,
                    });
                }
                if w.wr.is_terminal()
                    && let Some(eid) = &w.event_id
                {
                    finished.push((eid.clone(), w.wr.id.clone(), t2));
                }
            }
        }
        for (eid, wid, at) in finished {
            let ok = st.work_requests[&wid].wr.status == "SUCCEEDED";
            if let Some(e) = st.events.iter_mut().find(|e| e.event.id == eid)
                && e.pending_wr.as_deref() == Some(wid.as_str())
            {
                e.pending_wr = None;
                if ok {
                    let window = e.event.time_window_start.unwrap_or(at);
                    e.start_at = Some(window.max(at));
                } else {
                    // The reference does not say what a failed reschedule leaves; the
                    // emulator gives the event its window back.
                    e.event.time_window_start = e.window_before.take();
                }
                e.version += 1;
            }
        }
        for e in &mut st.events {
            let Some(start) = e.start_at else { continue };
            if !matches!(
                e.event.lifecycle_state.as_str(),
                "SCHEDULED" | "STARTED" | "PROCESSING"
            ) {
                continue;
            }
            let state = if now < start {
                "SCHEDULED"
            } else if e.outcome == "CANCELED" {
                "CANCELED"
            } else if now < start + step {
                "STARTED"
            } else if now < start + step + step {
                "PROCESSING"
            } else {
                e.outcome.as_str()
            };
            if state != e.event.lifecycle_state {
                let state = state.to_string();
                if state != "SCHEDULED" && e.event.time_started.is_none() && state != "CANCELED" {
                    e.event.time_started = Some(start);
                }
                if matches!(state.as_str(), "SUCCEEDED" | "FAILED" | "CANCELED") {
                    e.event.time_finished = Some(now);
                    e.event.lifecycle_details = Some(format!("maintenance {state}"));
                    if let Some(i) = st.instances.get_mut(&e.event.instance_id) {
                        i.lifecycle_state = "RUNNING".into();
                    }
                }
                e.event.lifecycle_state = state;
                e.version += 1;
            }
        }
    }
}

/// Gives every answer an `opc-request-id` (the client's, else a new one) and logs one
/// line per request at info (method, path, status, request id, latency), and one more
/// per refusal with its code and reason.
async fn request_log(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let rid = req
        .headers()
        .get("opc-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("emu-{:016x}", Jitter::from_time().unit().to_bits()));
    let mut r = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&rid) {
        r.headers_mut().insert("opc-request-id", v);
    }
    let status = r.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(%method, %path, status, opc_request_id = %rid, latency_ms, "request");
    if let Some(refusal) = r.extensions().get::<Refusal>() {
        let mut st = s.state.lock().unwrap();
        st.refused += 1;
        if st.refusals.len() < MAX_REFUSALS_KEPT {
            st.refusals.push(format!(
                "{method} {path}: {status} {}: {}",
                refusal.code, refusal.message
            ));
        }
        drop(st);
        tracing::info!(
            %method, %path, status, opc_request_id = %rid,
            code = %refusal.code, reason = ?refusal.message, "refused"
        );
    }
    r
}

/// Signature check, then fault injection.
async fn authenticate(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 << 20).await else {
        return api_error(400, "InvalidParameter", "unreadable body");
    };
    if let Err(why) = check_signature(&s, &parts, &bytes) {
        return api_error(
            401,
            "NotAuthenticated",
            format!(
                "The required information to complete authentication was not provided or was incorrect: {why}"
            ),
        );
    }
    let faults = s.faults.lock().unwrap().clone();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if faults.error_rate > 0.0 && s.dice.unit() < faults.error_rate {
        return if s.dice.unit() < 0.5 {
            api_error(429, "TooManyRequests", "too many requests (injected)")
        } else {
            api_error(500, "InternalServerError", "internal error (injected)")
        };
    }
    s.state.lock().unwrap().requests += 1;
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// The checks every signed request passes: an `authorization` of the Signature scheme
/// signing at least `required`, a `date` within the allowed skew, and for requests with a
/// body, `x-content-sha256` and `content-length` that match it.
fn check_request(
    s: &Shared,
    parts: &axum::http::request::Parts,
    body: &[u8],
    required: &[&str],
) -> Result<sign::ParsedAuthorization, String> {
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let auth = header("authorization").ok_or("no authorization header")?;
    let parsed = sign::parse_authorization(&auth)?;
    for r in required {
        if !parsed.headers.iter().any(|h| h == r) {
            return Err(format!("header {r} is not signed"));
        }
    }
    let date = header("date")
        .or_else(|| header("x-date"))
        .ok_or("no date header")?;
    let ts = sign::parse_http_date(&date).ok_or("unreadable date header")?;
    let skew = Timestamp::now().duration_since(ts).abs();
    if skew > SignedDuration::from_secs(s.scenario.max_clock_skew_seconds) {
        return Err(format!("the date header is {}s off", skew.as_secs()));
    }
    if sign::method_has_body(parts.method.as_str()) {
        let sent = header("x-content-sha256").unwrap_or_default();
        if sent != sign::content_sha256(body) {
            return Err("x-content-sha256 does not match the body".into());
        }
        if header("content-length").and_then(|l| l.parse::<usize>().ok()) != Some(body.len()) {
            return Err("content-length does not match the body".into());
        }
    }
    Ok(parsed)
}

fn check_signature(
    s: &Shared,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Result<(), String> {
    let method = parts.method.as_str();
    let mut required: Vec<&str> = sign::GENERIC_HEADERS.to_vec();
    if sign::method_has_body(method) {
        required.extend(sign::BODY_HEADERS);
    }
    let parsed = check_request(s, parts, body, &required)?;
    let session_key;
    let key = match parsed.key_id.strip_prefix("ST$") {
        Some(token) => {
            session_key = s.tokens.session_key(token, s.clock.now())?;
            &session_key
        }
        None => {
            let fp = parsed.key_id.rsplit('/').next().unwrap_or_default();
            s.keys
                .iter()
                .find(|(f, _)| f == fp)
                .map(|(_, k)| k)
                .ok_or_else(|| format!("unknown key {}", parsed.key_id))?
        }
    };
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    sign::verify(&parsed, method, pq, header, key)
}

fn page_of<T: Clone>(
    items: &[T],
    q: &HashMap<String, String>,
    default: usize,
) -> Result<(Vec<T>, Option<String>), Box<Response>> {
    let limit = match q.get("limit") {
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(Box::new(api_error(
                    400,
                    "InvalidParameter",
                    format!("invalid limit {l}"),
                )));
            }
        },
        None => default.max(1),
    };
    let start = match q.get("page") {
        Some(p) => p
            .strip_prefix("p")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                Box::new(api_error(
                    400,
                    "InvalidParameter",
                    format!("invalid page {p}"),
                ))
            })?,
        None => 0,
    };
    let end = (start + limit).min(items.len());
    let slice = items
        .get(start.min(items.len())..end)
        .unwrap_or(&[])
        .to_vec();
    let next = (end < items.len()).then(|| format!("p{end}"));
    Ok((slice, next))
}

fn paged<T: serde::Serialize + Clone>(
    items: &[T],
    q: &HashMap<String, String>,
    default: usize,
) -> Response {
    match page_of(items, q, default) {
        Ok((slice, next)) => {
            let h: Vec<(String, String)> = next
                .map(|n| vec![("opc-next-page".to_string(), n)])
                .unwrap_or_default();
            json_ok(200, &slice, &h)
        }
        Err(r) => *r,
    }
}

fn parse_ts(q: &HashMap<String, String>, k: &str) -> Result<Option<Timestamp>, Box<Response>> {
    q.get(k)
        .map(|v| {
            v.parse::<Timestamp>()
                .map_err(|e| Box::new(api_error(400, "InvalidParameter", format!("{k}: {e}"))))
        })
        .transpose()
}

/// What `ListInstanceMaintenanceEvents` shows of an event: an
/// `InstanceMaintenanceEventSummary` has no `lifecycleDetails`, `canDeleteLocalStorage`
/// or `additionalDetails` (the SDK's model).
fn summary(e: &InstanceMaintenanceEvent) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        for k in [
            "lifecycleDetails",
            "canDeleteLocalStorage",
            "additionalDetails",
        ] {
            m.remove(k);
        }
    }
    v
}

/// Sorts by `sortBy` (`time` for TIMECREATED, `name` for the name field) and
/// `sortOrder`, with OCI's documented defaults: TIMECREATED descending, a name
/// ascending. With no `sortBy`, OCI's reference does not say which field it sorts by;
/// the emulator takes TIMECREATED. Ties go by OCID, in the same direction.
fn sort_items<T>(
    items: &mut [T],
    q: &HashMap<String, String>,
    name_field: &str,
    time: impl Fn(&T) -> Option<Timestamp>,
    name: impl Fn(&T) -> Option<String>,
    id: impl Fn(&T) -> String,
) -> Result<(), Box<Response>> {
    check_enum(q, "sortBy", &["TIMECREATED", name_field])?;
    let by_name = q.get("sortBy").is_some_and(|b| b == name_field);
    let desc = descending(q, !by_name)?;
    if by_name {
        // Case-sensitive, as the reference says; an item without a name sorts first.
        items.sort_by_key(|a| (name(a), id(a)));
    } else {
        items.sort_by_key(|a| (time(a), id(a)));
    }
    if desc {
        items.reverse();
    }
    Ok(())
}

async fn list_events(State(s): State<Arc<Shared>>, Query(q): Q) -> Response {
    list_events_of(&s, &q).unwrap_or_else(|r| *r)
}

fn list_events_of(s: &Shared, q: &HashMap<String, String>) -> Result<Response, Box<Response>> {
    let comp = required(q, "compartmentId")?;
    check_enum(q, "lifecycleState", scenario::enums::EVENT_STATES)?;
    let gte = parse_ts(q, "timeWindowStartGreaterThanOrEqualTo")?;
    let lte = parse_ts(q, "timeWindowStartLessThanOrEqualTo")?;
    let mut st = s.state.lock().unwrap();
    s.tick(&mut st);
    let eq = |k: &str, v: &str| q.get(k).is_none_or(|x| x == v);
    // The reference calls the window filters a range "to return the maintenances which
    // are not completed"; whether finished events are then left out is not said: the
    // emulator filters on timeWindowStart alone.
    let mut items: Vec<&InstanceMaintenanceEvent> = st
        .events
        .iter()
        .map(|e| &e.event)
        .filter(|e| &e.compartment_id == comp)
        .filter(|e| eq("instanceId", &e.instance_id))
        .filter(|e| eq("lifecycleState", &e.lifecycle_state))
        .filter(|e| eq("instanceAction", &e.instance_action))
        .filter(|e| {
            eq(
                "correlationToken",
                e.correlation_token.as_deref().unwrap_or(""),
            )
        })
        .filter(|e| gte.is_none_or(|t| e.time_window_start.is_some_and(|w| w >= t)))
        .filter(|e| lte.is_none_or(|t| e.time_window_start.is_some_and(|w| w <= t)))
        .collect();
    sort_items(
        &mut items,
        q,
        "DISPLAYNAME",
        |e| e.time_created,
        |e| e.display_name.clone(),
        |e| e.id.clone(),
    )?;
    let items: Vec<serde_json::Value> = items.into_iter().map(summary).collect();
    Ok(paged(&items, q, s.scenario.default_page_size))
}

async fn get_event(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut st = s.state.lock().unwrap();
    s.tick(&mut st);
    match st.events.iter().find(|e| e.event.id == id) {
        Some(e) => json_ok(200, &e.event, &[("etag".into(), e.etag())]),
        None => not_found("InstanceMaintenanceEvent", &id),
    }
}

fn cached(c: &Cached) -> Response {
    let mut r = (
        StatusCode::from_u16(c.status).unwrap_or(StatusCode::OK),
        c.body.clone(),
    )
        .into_response();
    for (k, v) in &c.headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::try_from(k.as_str()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(n, v);
        }
    }
    r
}

async fn update_event(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let token = h("opc-retry-token");
    // The reference says a retry token makes a repeated request safe; which code a token
    // reused for another request gets is not documented (its API errors list only
    // InvalidatedRetryToken): the emulator answers 409 RetryTokenReused.
    let key = format!("PUT {id}");
    let mut st = s.state.lock().unwrap();
    s.tick(&mut st);
    if let Some(t) = &token
        && let Some(c) = st.retry_tokens.get(t)
    {
        if c.key == key {
            return cached(c);
        }
        return api_error(
            409,
            "RetryTokenReused",
            "the retry token was used for another request",
        );
    }
    let now = s.clock.now();
    let details: UpdateInstanceMaintenanceEventDetails = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) if e.is_data() => return api_error(400, "InvalidParameter", format!("body: {e}")),
        Err(e) => return api_error(400, "CannotParseRequest", format!("body: {e}")),
    };
    if let Some(a) = &details.alternative_resolution_action
        && !scenario::enums::RESOLUTION_ACTIONS.contains(&a.as_str())
    {
        return api_error(
            400,
            "InvalidParameter",
            format!(
                "alternativeResolutionAction {a} is not one of {}",
                scenario::enums::RESOLUTION_ACTIONS.join(", ")
            ),
        );
    }
    let Some(idx) = st.events.iter().position(|e| e.event.id == id) else {
        return not_found("InstanceMaintenanceEvent", &id);
    };
    let e = &st.events[idx];
    if let Some(m) = h("if-match")
        && m != e.etag()
    {
        return api_error(
            412,
            "NoEtagMatch",
            format!("if-match {m} does not match the current etag"),
        );
    }
    // Which updates OCI still takes once an event started is not documented: the emulator
    // takes none (409 IncorrectState, the code of a state that will change).
    if e.event.lifecycle_state != "SCHEDULED" {
        return api_error(
            409,
            "IncorrectState",
            format!("the event is {}, not SCHEDULED", e.event.lifecycle_state),
        );
    }
    if e.pending_wr.is_some() {
        return api_error(
            409,
            "IncorrectState",
            "a reschedule of this event is in progress",
        );
    }
    if let Some(a) = &details.alternative_resolution_action
        && !e.event.alternative_resolution_actions.contains(a)
    {
        return api_error(
            400,
            "InvalidParameter",
            format!(
                "alternativeResolutionAction {a} is not one of this event's alternativeResolutionActions [{}]",
                e.event.alternative_resolution_actions.join(", ")
            ),
        );
    }
    // The codes of a refused window are not documented: 409 Conflict (a state that will
    // not change) for an event that cannot be rescheduled, 400 InvalidParameter for a
    // window in the past (by more than a minute of clock skew) or after the hard due date.
    if let Some(w) = details.time_window_start {
        if !e.event.can_reschedule {
            return api_error(
                409,
                "Conflict",
                "this maintenance event cannot be rescheduled (canReschedule is false)",
            );
        }
        if w < now - SignedDuration::from_mins(1) {
            return api_error(
                400,
                "InvalidParameter",
                format!("timeWindowStart {w} is in the past"),
            );
        }
        if let Some(due) = e.event.time_hard_due_date
            && w > due
        {
            return api_error(
                400,
                "InvalidParameter",
                format!("timeWindowStart {w} is after timeHardDueDate {due}"),
            );
        }
    }
    let wr_id = s.next_id(&mut st, "workrequest");
    let e = &mut st.events[idx];
    if let Some(w) = details.time_window_start {
        e.window_before = e.event.time_window_start.replace(w);
    }
    if let Some(n) = details.display_name {
        e.event.display_name = Some(n);
    }
    if let Some(t) = details.freeform_tags {
        e.event.freeform_tags = t;
    }
    if let Some(t) = details.defined_tags {
        e.event.defined_tags = t;
    }
    // canDeleteLocalStorage "is only applicable when setting the
    // alternativeResolutionAction" (the reference); elsewhere it is ignored. Whether OCI
    // refuses an action that loses local storage without it is said only for instances
    // that have local storage, which the emulator does not model.
    if let Some(a) = details.alternative_resolution_action {
        e.event.instance_action = a;
        if let Some(c) = details.can_delete_local_storage {
            e.event.can_delete_local_storage = Some(c);
        }
    }
    e.version += 1;
    let reschedules = details.time_window_start.is_some();
    if reschedules {
        e.pending_wr = Some(wr_id.clone());
    }
    let (outcome, comp, eid) = (
        if reschedules {
            e.work_request_outcome.clone()
        } else {
            "SUCCEEDED".into()
        },
        e.event.compartment_id.clone(),
        e.event.id.clone(),
    );
    st.work_requests.insert(
        wr_id.clone(),
        WrState {
            wr: WorkRequest {
                id: wr_id.clone(),
                operation_type: "UpdateInstanceMaintenanceEvent".into(),
                status: "ACCEPTED".into(),
                compartment_id: comp,
                resources: vec![WorkRequestResource {
                    entity_type: "instanceMaintenanceEvent".into(),
                    action_type: "UPDATED".into(),
                    identifier: eid.clone(),
                    entity_uri: Some(format!("/20160918/instanceMaintenanceEvents/{eid}")),
                }],
                percent_complete: 0.0,
                time_accepted: Some(now),
                time_started: None,
                time_finished: None,
            },
            created: now,
            outcome,
            event_id: reschedules.then_some(eid),
            errors: vec![],
            logs: vec![WorkRequestLogEntry {
                message: "work request ACCEPTED".into(),
                timestamp: now,
            }],
        },
    );
    let c = Cached {
        key,
        status: 202,
        headers: vec![("opc-work-request-id".into(), wr_id)],
        body: vec![],
    };
    let r = cached(&c);
    if let Some(t) = token {
        st.retry_tokens.insert(t, c);
    }
    r
}

async fn list_instances(State(s): State<Arc<Shared>>, Query(q): Q) -> Response {
    let comp = match required(&q, "compartmentId") {
        Ok(c) => c,
        Err(r) => return *r,
    };
    // "The state value is case-insensitive" (the reference).
    let state = q.get("lifecycleState").map(|v| v.to_ascii_uppercase());
    if let Some(v) = &state
        && !scenario::enums::INSTANCE_STATES.contains(&v.as_str())
    {
        return api_error(
            400,
            "InvalidParameter",
            format!("invalid lifecycleState {v}"),
        );
    }
    let mut st = s.state.lock().unwrap();
    s.tick(&mut st);
    let mut items: Vec<Instance> = st
        .instances
        .values()
        .filter(|i| &i.compartment_id == comp)
        .filter(|i| state.as_ref().is_none_or(|v| v == &i.lifecycle_state))
        .filter(|i| {
            q.get("availabilityDomain")
                .is_none_or(|v| v == &i.availability_domain)
        })
        .filter(|i| {
            q.get("displayName")
                .is_none_or(|v| Some(v) == i.display_name.as_ref())
        })
        // The emulator's instances belong to no capacity reservation or compute cluster.
        .filter(|_| !q.contains_key("capacityReservationId") && !q.contains_key("computeClusterId"))
        .cloned()
        .collect();
    // Without an availabilityDomain OCI groups by availability domain, then sorts.
    let grouped = !q.contains_key("availabilityDomain");
    if let Err(r) = sort_items(
        &mut items,
        &q,
        "DISPLAYNAME",
        |i| i.time_created,
        |i| i.display_name.clone(),
        |i| i.id.clone(),
    ) {
        return *r;
    }
    if grouped {
        items.sort_by(|a, b| a.availability_domain.cmp(&b.availability_domain));
    }
    paged(&items, &q, s.scenario.default_page_size)
}

async fn get_instance(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut st = s.state.lock().unwrap();
    s.tick(&mut st);
    match st.instances.get(&id) {
        Some(i) => json_ok(
            200,
            i,
            &[("etag".into(), format!("\"{:x}\"", fnv(&i.lifecycle_state)))],
        ),
        None => not_found("Instance", &id),
    }
}

const ACTIONS: [&str; 8] = [
    "STOP",
    "START",
    "SOFTRESET",
    "RESET",
    "SOFTSTOP",
    "SENDDIAGNOSTICINTERRUPT",
    "DIAGNOSTICREBOOT",
    "REBOOTMIGRATE",
];

async fn instance_action(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(action) = q.get("action").cloned() else {
        return api_error(400, "MissingParameter", "action is required");
    };
    if !ACTIONS.contains(&action.as_str()) {
        return api_error(400, "InvalidParameter", format!("invalid action {action}"));
    }
    if !body.is_empty() && serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return api_error(400, "CannotParseRequest", "body is not JSON");
    }
    let token = headers
        .get("opc-retry-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let key = format!("POST {id} {action}");
    let mut st = s.state.lock().unwrap();
    if let Some(t) = &token
        && let Some(c) = st.retry_tokens.get(t)
    {
        if c.key == key {
            return cached(c);
        }
        return api_error(
            409,
            "RetryTokenReused",
            "the retry token was used for another request",
        );
    }
    let Some(inst) = st.instances.get_mut(&id) else {
        return not_found("Instance", &id);
    };
    inst.lifecycle_state = match action.as_str() {
        "STOP" | "SOFTSTOP" => "STOPPED",
        _ => "RUNNING",
    }
    .into();
    let c = Cached {
        key,
        status: 200,
        // InstanceAction answers the Instance with an etag and no work request (the
        // SDKs' InstanceActionResponse).
        headers: vec![
            (
                "etag".into(),
                format!("\"{:x}\"", fnv(&inst.lifecycle_state)),
            ),
            ("content-type".into(), "application/json".into()),
        ],
        body: serde_json::to_vec(inst).unwrap_or_default(),
    };
    let r = cached(&c);
    if let Some(t) = token {
        st.retry_tokens.insert(t, c);
    }
    r
}

async fn get_work_request(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut st = s.state.lock().unwrap();
    s.tick(&mut st);
    match st.work_requests.get(&id) {
        Some(w) => json_ok(200, &w.wr, &[]),
        None => not_found("WorkRequest", &id),
    }
}

/// Errors or log entries of a work request, oldest first unless `sortOrder=DESC` (the
/// reference names no default order; ascending is the emulator's choice).
fn work_request_list<T: serde::Serialize + Clone>(
    s: &Shared,
    id: &str,
    q: &HashMap<String, String>,
    which: impl Fn(&WrState) -> &Vec<T>,
) -> Response {
    let desc = match descending(q, false) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let mut st = s.state.lock().unwrap();
    s.tick(&mut st);
    match st.work_requests.get(id) {
        Some(w) => {
            let mut items = which(w).clone();
            if desc {
                items.reverse();
            }
            paged(&items, q, s.scenario.default_page_size)
        }
        None => not_found("WorkRequest", id),
    }
}

async fn work_request_errors(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Response {
    work_request_list(&s, &id, &q, |w| &w.errors)
}

async fn work_request_logs(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Response {
    work_request_list(&s, &id, &q, |w| &w.logs)
}

/// The tenancy as Identity shows it through `GetCompartment`: the root compartment.
/// The reference does not say what its `compartmentId` is; the emulator gives the
/// tenancy's own OCID.
fn root_compartment(s: &Shared) -> Compartment {
    Compartment {
        id: s.scenario.tenancy.clone(),
        compartment_id: s.scenario.tenancy.clone(),
        name: s.scenario.tenancy_name.clone(),
        description: format!("tenancy {}", s.scenario.tenancy_name),
        time_created: Some(s.started),
        lifecycle_state: "ACTIVE".into(),
        ..Compartment::default()
    }
}

async fn get_tenancy(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if id != s.scenario.tenancy {
        return not_found("Tenancy", &id);
    }
    json_ok(
        200,
        &Tenancy {
            id,
            name: s.scenario.tenancy_name.clone(),
            description: Some(format!("tenancy {}", s.scenario.tenancy_name)),
            home_region_key: Some(region_key(&s.scenario.region)),
            ..Tenancy::default()
        },
        &[],
    )
}

/// The key of a region (`us-ashburn-1` → `IAD`) for the regions the SDK's tests use;
/// otherwise the region's name in capitals.
fn region_key(region: &str) -> String {
    match region {
        "us-ashburn-1" => "IAD",
        "us-phoenix-1" => "PHX",
        "eu-frankfurt-1" => "FRA",
        "uk-london-1" => "LHR",
        "ap-tokyo-1" => "NRT",
        other => return other.to_ascii_uppercase(),
    }
    .into()
}

async fn get_compartment(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if id == s.scenario.tenancy {
        return json_ok(200, &root_compartment(&s), &[]);
    }
    let st = s.state.lock().unwrap();
    match st.compartments.iter().find(|c| c.id == id) {
        Some(c) => json_ok(200, c, &[("etag".into(), format!("\"{:x}\"", fnv(&c.id)))]),
        None => not_found("Compartment", &id),
    }
}

async fn list_compartments(State(s): State<Arc<Shared>>, Query(q): Q) -> Response {
    let root = match required(&q, "compartmentId") {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if let Err(r) = check_enum(&q, "accessLevel", &["ANY", "ACCESSIBLE"]) {
        return *r;
    }
    let subtree = match q.get("compartmentIdInSubtree").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return api_error(
                400,
                "InvalidParameter",
                format!("compartmentIdInSubtree {v} is not a boolean"),
            );
        }
    };
    if subtree && root != &s.scenario.tenancy {
        return api_error(
            400,
            "InvalidParameter",
            "compartmentIdInSubtree can only be set to true on the tenancy",
        );
    }
    // "The state value is case-insensitive" (the reference).
    let state = q.get("lifecycleState").map(|v| v.to_ascii_uppercase());
    if let Some(v) = &state
        && !scenario::enums::COMPARTMENT_STATES.contains(&v.as_str())
    {
        return api_error(
            400,
            "InvalidParameter",
            format!("invalid lifecycleState {v}"),
        );
    }
    let st = s.state.lock().unwrap();
    if root != &s.scenario.tenancy && !st.compartments.iter().any(|c| &c.id == root) {
        return not_found("Compartment", root);
    }
    // With accessLevel ACCESSIBLE OCI leaves out compartments the caller may not
    // inspect; every signed caller of the emulator may inspect all of them.
    let mut items: Vec<Compartment> = st
        .compartments
        .iter()
        .filter(|c| subtree || &c.compartment_id == root)
        .filter(|c| state.as_ref().is_none_or(|l| l == &c.lifecycle_state))
        .filter(|c| q.get("name").is_none_or(|n| n == &c.name))
        .cloned()
        .collect();
    // Without sortBy the reference names no order; the emulator sorts by NAME.
    let by_time = q.get("sortBy").is_some_and(|b| b == "TIMECREATED");
    if let Err(r) = check_enum(&q, "sortBy", &["TIMECREATED", "NAME"]) {
        return *r;
    }
    let desc = match descending(&q, by_time) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    if by_time {
        items.sort_by_key(|c| (c.time_created, c.id.clone()));
    } else {
        items.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    }
    if desc {
        items.reverse();
    }
    paged(&items, &q, s.scenario.default_page_size)
}

async fn advance(State(s): State<Arc<Shared>>, Query(q): Q) -> Response {
    let secs = q.get("seconds").map(|v| v.parse::<f64>());
    let d = match secs {
        Some(Ok(v)) if v >= 0.0 => SignedDuration::try_from_secs_f64(v).ok(),
        _ => None,
    };
    let Some(d) = d else {
        return api_error(
            400,
            "InvalidParameter",
            "seconds must be a number of seconds >= 0",
        );
    };
    *s.clock.offset.lock().unwrap() += d;
    json_ok(
        200,
        &serde_json::json!({"now": s.clock.now().to_string()}),
        &[],
    )
}

async fn dump_state(State(s): State<Arc<Shared>>) -> Response {
    let mut st = s.state.lock().unwrap();
    s.tick(&mut st);
    let events: Vec<_> = st.events.iter().map(|e| &e.event).collect();
    let wrs: Vec<_> = st.work_requests.values().map(|w| &w.wr).collect();
    json_ok(
        200,
        &serde_json::json!({
            "now": s.clock.now().to_string(),
            "tenancy": s.scenario.tenancy,
            "events": events,
            "instances": st.instances.values().collect::<Vec<_>>(),
            "workRequests": wrs,
            "requests": st.requests,
            "refused": st.refused,
            "refusals": st.refusals,
            "tokensIssued": s.tokens.issued.load(std::sync::atomic::Ordering::Relaxed),
        }),
        &[],
    )
}

/// `slurm-maint oci-emulator`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = AFTER_HELP)]
pub struct EmulatorArgs {
    /// Address to listen on (port 0: any free port; the address is printed first).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Scenario file (YAML or JSON); none: a generated tenancy of 8 instances, 4 events.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// PEM public (or private) key whose signatures are accepted; repeatable.
    #[arg(long = "public-key")]
    pub public_keys: Vec<PathBuf>,
    /// File holding a ServiceAccount token accepted by `/resourcePrincipalSessionTokens`
    /// (OKE workload identity); repeatable.
    #[arg(long = "sa-token")]
    pub sa_tokens: Vec<PathBuf>,
    /// Instance identity served at `/opc/v2/identity/cert.pem` (with `--instance-key`,
    /// `--instance-intermediate`, `--instance-ca`): enables instance principals.
    #[arg(long, requires_all = ["instance_key", "instance_intermediate", "instance_ca"])]
    pub instance_cert: Option<PathBuf>,
    /// Private key of `--instance-cert` (served at `/opc/v2/identity/key.pem`).
    #[arg(long)]
    pub instance_key: Option<PathBuf>,
    /// Issuer of `--instance-cert` (served at `/opc/v2/identity/intermediate.pem`).
    #[arg(long)]
    pub instance_intermediate: Option<PathBuf>,
    /// PEM roots that `/v1/x509` trusts.
    #[arg(long)]
    pub instance_ca: Option<PathBuf>,
    /// Lifetime of issued session tokens, in seconds.
    #[arg(long, default_value_t = 1200)]
    pub token_ttl_seconds: u64,
    /// Also serve HTTPS here (needs `--tls-cert`, `--tls-key`); its address is printed
    /// second, as `tls listening on ADDR`.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_listen: Option<String>,
    /// PEM certificate chain of the HTTPS listener.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the HTTPS listener.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Override the scenario's injected error rate (429/500), in [0, 1].
    #[arg(long)]
    pub error_rate: Option<f64>,
    /// Override the scenario's added latency per request.
    #[arg(long)]
    pub latency_ms: Option<u64>,
}

const AFTER_HELP: &str = "\
The API is under /20160918 (Compute maintenance events and instances, Work Requests,
Identity compartments and tenancy). Without --scenario the tenancy is
ocid1.tenancy.oc1..emulator (a scenario's `tenancy:` replaces it); the tenancy in use
is printed on stdout after the listening line(s).

Control endpoints (unsigned):
  POST /_emulator/advance?seconds=N   move the emulator's clock N seconds forward
  GET  /_emulator/state               clock, events, instances, work requests, counts

One log line per request at info (method, path, status, opc-request-id, latency) and
one per refused request with its reason; RUST_LOG=warn quiets them.
Scenario format and an example: docs/oci-emulator.md.";

/// Runs the emulator until interrupted. Prints `listening on ADDR` on stdout first.
pub async fn run(args: EmulatorArgs) -> Result<(), String> {
    let mut scenario = match &args.scenario {
        Some(p) => Scenario::parse(
            &std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        )?,
        None => Scenario {
            generate: Some(Generate {
                compartments: 2,
                instances: 8,
                events: 4,
                host_prefix: "gpu-".into(),
                fault_ids: vec!["HPCRDMA-0002-02".into(), "HPCGPU-0001-01".into()],
            }),
            ..Scenario::default()
        },
    };
    if let Some(r) = args.error_rate {
        scenario.faults.error_rate = r;
    }
    if let Some(l) = args.latency_ms {
        scenario.faults.latency_ms = l;
    }
    let mut keys = vec![];
    for p in &args.public_keys {
        let pem = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        keys.push(
            super::config::parse_public_key(&pem).map_err(|e| format!("{}: {e}", p.display()))?,
        );
    }
    let read =
        |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut tokens = TokenAuth {
        token_ttl: SignedDuration::from_secs(args.token_ttl_seconds as i64),
        ..TokenAuth::default()
    };
    for p in &args.sa_tokens {
        tokens.sa_tokens.push(read(p)?.trim().to_string());
    }
    if let (Some(cert), Some(key), Some(inter), Some(ca)) = (
        &args.instance_cert,
        &args.instance_key,
        &args.instance_intermediate,
        &args.instance_ca,
    ) {
        tokens.instance = Some(InstanceIdentity {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            intermediate_pem: read(inter)?,
            trusted_ca_pem: read(ca)?,
        });
    }
    if keys.is_empty() && tokens.sa_tokens.is_empty() && tokens.instance.is_none() {
        return Err("give --public-key, --sa-token or --instance-cert: nothing could sign".into());
    }
    let emu = Emulator::with_tokens(scenario, keys, tokens)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("{}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {addr}");
    let tls = match (&args.tls_listen, &args.tls_cert, &args.tls_key) {
        (Some(listen), Some(cert), Some(key)) => {
            let config = crate::agent::tls::server_config(cert, key, None)?;
            let l = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| format!("{listen}: {e}"))?;
            println!(
                "tls listening on {}",
                l.local_addr().map_err(|e| e.to_string())?
            );
            Some((l, config))
        }
        _ => None,
    };
    // Whoever reads the address may close stdout then: no panic on a closed pipe.
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "tenancy {}", emu.tenancy());
    let _ = out.flush();
    let router = emu.router();
    let tls_task = async move {
        match tls {
            Some((l, config)) => {
                crate::agent::tls::serve(l, config, router, std::future::pending()).await
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = emu.serve(listener) => r.map_err(|e| e.to_string()),
        () = tls_task => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `slurm-maint oci-emulator --help` names the control endpoints, the default
    /// tenancy and the docs.
    #[test]
    fn the_help_names_the_control_endpoints_and_the_default_tenancy() {
        let mut cmd =
            <EmulatorArgs as clap::Args>::augment_args(clap::Command::new("oci-emulator"));
        let help = cmd.render_long_help().to_string();
        for s in [
            "/_emulator/advance",
            "/_emulator/state",
            scenario::DEFAULT_TENANCY,
            "docs/oci-emulator.md",
        ] {
            assert!(help.contains(s), "{s} in {help}");
        }
    }
}
