//! `MaintenancePolicy`: how maintenance runs in one Slurm partition.

use jiff::Timestamp;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::range_rule;
use super::{Condition, Duration};

/// Desired maintenance of one Slurm partition (optionally narrowed by a nodelist).
///
/// Safe by default: with `reservations.enabled` and `reboots.enabled` false the
/// operator only observes and reports its plan in status.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "slurm-maint.io",
    version = "v1alpha1",
    kind = "MaintenancePolicy",
    namespaced,
    status = "MaintenancePolicyStatus",
    shortname = "mpol",
    category = "slurm-maint",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Partition","type":"string","jsonPath":".spec.partition"}"#,
    printcolumn = r#"{"name":"Allowed","type":"integer","jsonPath":".status.budget.allowed","description":"Nodes that may be out at once"}"#,
    printcolumn = r#"{"name":"Unavail","type":"integer","jsonPath":".status.budget.unavailable","description":"Nodes out for maintenance"}"#,
    printcolumn = r#"{"name":"Down","type":"integer","jsonPath":".status.budget.down","description":"Nodes Slurm has DOWN/DRAIN/FAIL"}"#,
    printcolumn = r#"{"name":"Combined","type":"integer","jsonPath":".status.budget.combined","description":"|unavailable ∪ down|, compared against Allowed"}"#,
    printcolumn = r#"{"name":"Done","type":"integer","jsonPath":".status.phases.completed"}"#,
    printcolumn = r#"{"name":"Total","type":"integer","jsonPath":".status.nodesNeedingWork","description":"Nodes in the campaign"}"#,
    printcolumn = r#"{"name":"Paused","type":"boolean","jsonPath":".spec.paused"}"#,
    printcolumn = r#"{"name":"DryRun","type":"boolean","jsonPath":".spec.dryRun","priority":1}"#,
    printcolumn = r#"{"name":"ETA","type":"string","jsonPath":".status.eta","priority":1,"description":"When the campaign is expected to finish (UTC)"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.reboots) && self.reboots.enabled) || (has(self.reservations) && self.reservations.enabled)").message("reboots.enabled requires reservations.enabled: a node is emptied by its maintenance reservation before it reboots")
)]
pub struct MaintenancePolicySpec {
    /// Slurm partition this policy manages. Its budget counts every node of the partition.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    pub partition: String,

    /// Optional Slurm hostlist (e.g. `gpu[001-064,080]`) narrowing which nodes of the
    /// partition get maintenance. The budget still counts the whole partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 4096),
        regex(pattern = r"^[A-Za-z0-9_.,\[\]-]+$")
    )]
    pub nodelist: Option<String>,

    /// How the controller reaches Slurm: the slurm-maint agent.
    pub agent: AgentRef,

    /// How many nodes of the partition may be out at once.
    #[serde(default)]
    pub budget: Budget,

    /// Slurm MAINT reservations that empty each node at its jobs' end.
    #[serde(default)]
    pub reservations: ReservationSettings,

    /// Rebooting nodes once their reservation is active.
    #[serde(default)]
    pub reboots: RebootSettings,

    /// Which jobs may be ended early to start maintenance sooner.
    #[serde(default)]
    pub preemption: PreemptionSettings,

    /// The rolling-reboot campaign: which nodes need a reboot, and when work may start.
    #[serde(default)]
    pub campaign: Campaign,

    /// OCI instance maintenance events handled under the same budget.
    #[serde(default)]
    pub oci: OciSettings,

    /// Prometheus alerts that hold new work while any of them fires (work already
    /// started goes on). Unset: nothing is asked of Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blockers: Option<Blockers>,
    /// Named checks of the agent (its checks file) run before a node goes back to work,
    /// chosen by kind of work and fault. Unset: the agent's single health check
    /// (`reboots.healthCheck`, and always for OCI work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<HealthChecks>,

    /// Stop starting new work. Nodes already rebooting finish safely; nothing new starts.
    #[serde(default)]
    pub paused: bool,

    /// Compute and show the plan in status, but change nothing in Slurm or OCI.
    #[serde(default)]
    pub dry_run: bool,

    /// Time between reconcile passes.
    #[serde(default = "default_interval")]
    #[x_kube(validation = range_rule("interval", "5s", "1h"))]
    pub interval: Duration,
}

fn default_interval() -> Duration {
    Duration::secs(60)
}

/// Connection to the slurm-maint agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentRef {
    /// Base URL of the agent, e.g. `http://slurm-maint-agent.slurm:8080`.
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^https?://[^\s]+$"))]
    pub url: String,
    /// Secret (in the policy's namespace) holding the agent's bearer token.
    pub token_secret_ref: SecretKeyRef,
}

/// A key of a Secret in the policy's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_token_key() -> String {
    "token".into()
}

/// The capacity budget. Give a percentage or an absolute count, not both; with neither,
/// 10 % applies. The budget counts nodes out for maintenance together with nodes Slurm
/// already has DOWN/DRAIN/FAIL/NOT_RESPONDING/POWER_DOWN (their union, not their sum).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.maxUnavailable) && has(self.maxUnavailablePercent))").message("set either budget.maxUnavailable or budget.maxUnavailablePercent, not both")
)]
pub struct Budget {
    /// Percent of the partition's nodes that may be unavailable at once (0 < p ≤ 100).
    /// Allowed nodes = max(1, floor(total × p / 100)): never above the percentage, except
    /// that one node at a time can always proceed in a small partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100.0))]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 100.0").message("maxUnavailablePercent must be greater than 0 and at most 100"))]
    pub max_unavailable_percent: Option<f64>,

    /// Absolute number of nodes that may be unavailable at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_unavailable: Option<u32>,

    /// How far ahead reservations are made: within it, wherever the budget's timeline
    /// has room at a node's release time; beyond it, at most as many as the budget
    /// allows. Anyone's MAINT reservation starting within it shows as committed.
    #[serde(default = "default_lead_time")]
    #[x_kube(validation = range_rule("reservationLeadTime", "0s", "168h"))]
    pub reservation_lead_time: Duration,

    /// Domains the budget respects beside the node count (switches, blocks, racks):
    /// spread across them, or take each whole. Unset: nodes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<BudgetTopology>,
}

/// Where a topology-aware budget finds its domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DomainSourceKind {
    /// Slurm's `topology/tree`: the switch at `switchLevel` above each node.
    SlurmSwitches,
    /// Slurm's `topology/block`: each node's block.
    SlurmBlocks,
    /// The node's first feature starting with `featurePrefix` (e.g. `rack-`).
    NodeFeature,
}

/// How a topology-aware budget treats its domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TopologyModeKind {
    /// At most `maxUnavailablePerDomain` nodes out in any one domain, on top of the
    /// partition budget: no domain loses more than that.
    Spread,
    /// A domain's nodes are taken together once the domain's jobs have ended (one
    /// reservation over the domain), rebooted together and returned whole; domains go
    /// earliest release first under the partition budget, counted in nodes.
    WholeDomain,
}

/// `budget.topology`: domains the budget respects. Down and drained nodes count in their
/// domain as in the partition; a node the source does not place is a domain of its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.source == 'SlurmSwitches' || !has(self.switchLevel)").message("budget.topology.switchLevel applies to source SlurmSwitches only"),
    validation = Rule::new("(self.source == 'NodeFeature') == has(self.featurePrefix)").message("budget.topology.featurePrefix is required with source NodeFeature, and applies to it only"),
    validation = Rule::new("self.mode == 'Spread' || !has(self.maxUnavailablePerDomain)").message("budget.topology.maxUnavailablePerDomain applies to mode Spread only")
)]
pub struct BudgetTopology {
    /// Where the domains come from.
    pub source: DomainSourceKind,
    /// With `SlurmSwitches`: the switch level (0: leaf switches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 16))]
    pub switch_level: Option<u32>,
    /// With `NodeFeature`: the prefix of the feature naming a node's domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_.:-]+$"))]
    pub feature_prefix: Option<String>,
    /// `Spread` or `WholeDomain`.
    pub mode: TopologyModeKind,
    /// With `Spread`: nodes that may be out at once in any one domain (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_unavailable_per_domain: Option<u32>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_unavailable_percent: None,
            max_unavailable: None,
            reservation_lead_time: default_lead_time(),
            topology: None,
        }
    }
}

fn default_lead_time() -> Duration {
    Duration::mins(60)
}

/// Slurm MAINT reservations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationSettings {
    /// Create reservations. Off by default (monitor only).
    #[serde(default)]
    pub enabled: bool,
    /// Length of each reservation; long enough to reboot and check the node.
    #[serde(default = "default_reservation_duration")]
    #[x_kube(validation = range_rule("reservations.duration", "5m", "720h"))]
    pub duration: Duration,
    /// Users allowed in the reservation (Slurm needs users or accounts).
    #[serde(default = "default_users")]
    #[schemars(length(max = 64), inner(regex(pattern = r"^[A-Za-z0-9_.-]{1,64}$")))]
    pub users: Vec<String>,
    /// Accounts allowed in the reservation.
    #[serde(default)]
    #[schemars(length(max = 64), inner(regex(pattern = r"^[A-Za-z0-9_.-]{1,64}$")))]
    pub accounts: Vec<String>,
    /// Reservation flags; MAINT is always added.
    #[serde(default = "default_flags")]
    #[schemars(length(max = 16), inner(regex(pattern = r"^[A-Z_]{1,32}$")))]
    pub flags: Vec<String>,
    /// Prefix of reservation names; reservations without it are never touched.
    #[serde(default = "default_prefix")]
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[A-Za-z][A-Za-z0-9_-]*$")
    )]
    pub name_prefix: String,
}

impl Default for ReservationSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            duration: default_reservation_duration(),
            users: default_users(),
            accounts: vec![],
            flags: default_flags(),
            name_prefix: default_prefix(),
        }
    }
}

fn default_reservation_duration() -> Duration {
    Duration::hours(6)
}
fn default_users() -> Vec<String> {
    vec!["root".into()]
}
fn default_flags() -> Vec<String> {
    vec!["MAINT".into()]
}
fn default_prefix() -> String {
    "slurm-maint".into()
}

/// Reboots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebootSettings {
    /// Reboot nodes. Off by default. Requires `reservations.enabled`.
    #[serde(default)]
    pub enabled: bool,
    /// How the agent reboots a node: `Scontrol` (`scontrol reboot ASAP nextstate=RESUME`)
    /// or `Command` (the site command configured on the agent, e.g. ipmitool).
    #[serde(default)]
    pub method: RebootMethod,
    /// How long a reboot may take until the node is back in service.
    #[serde(default = "default_reboot_timeout")]
    #[x_kube(validation = range_rule("reboots.timeout", "30s", "24h"))]
    pub timeout: Duration,
    /// Attempts before a node is marked Failed and kept drained.
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 10))]
    pub max_attempts: u32,
    /// Run the agent's health check before a rebooted node is released.
    #[serde(default = "default_true")]
    pub health_check: bool,
    /// Wait this long after a node is healthy before counting it complete (settle time).
    #[serde(default)]
    #[x_kube(validation = range_rule("reboots.settleTime", "0s", "24h"))]
    pub settle_time: Duration,
}

impl Default for RebootSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            method: RebootMethod::default(),
            timeout: default_reboot_timeout(),
            max_attempts: default_max_attempts(),
            health_check: true,
            settle_time: Duration::default(),
        }
    }
}

fn default_reboot_timeout() -> Duration {
    Duration::secs(600)
}
fn default_max_attempts() -> u32 {
    3
}
fn default_true() -> bool {
    true
}

/// Pattern of a check name (the agent's `validate::check_name`).
const CHECK_NAME: &str = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$";

/// Named health checks, run in phase HealthCheck in order: `readiness` first, then the
/// checks of the work; the first failure ends the work `Failed` with the node drained.
/// The agent defines each check (argv, timeout, retries, what passes); the policy only
/// names them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.readiness) || !self.reboot.exists(c, c == self.readiness)").message("healthChecks.readiness runs first already: leave it out of healthChecks.reboot"))]
pub struct HealthChecks {
    /// Run first, for every kind of work (the node answers: a light check the agent
    /// retries with back-off), before the heavier ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = CHECK_NAME))]
    pub readiness: Option<String>,
    /// Checks after a rolling reboot, in order.
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(min = 1, max = 64), regex(pattern = CHECK_NAME)))]
    pub reboot: Vec<String>,
    /// Checks after OCI maintenance by fault: the first rule naming one of the event's
    /// fault ids or its maintenance category (exact match, as for approval) picks them.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub oci: Vec<FaultChecks>,
    /// Checks after OCI maintenance whose event no rule of `oci` names.
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(min = 1, max = 64), regex(pattern = CHECK_NAME)))]
    pub oci_default: Vec<String>,
    /// A webhook called once for each failed check (to open a ticket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
}

/// The checks for OCI work with one of these faults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultChecks {
    /// Fault ids (e.g. `HPCGPU-0001-01`) or maintenance categories (e.g. `FLEXIBLE`).
    #[schemars(
        length(min = 1, max = 64),
        inner(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_.-]+$"))
    )]
    pub faults: Vec<String>,
    /// Checks to run, in order (after `readiness`).
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(min = 1, max = 64), regex(pattern = CHECK_NAME)))]
    pub checks: Vec<String>,
}

/// A webhook whose URL is kept in a Secret (it often carries a credential). It gets a
/// JSON POST `{policy, work, node, fault, check, message, output}`, retried with back-off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Secret (policy's namespace) holding the URL; the controller must be allowed to
    /// read it (chart: `rbac.extraSecretNames`).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub secret_name: String,
    /// Key of the URL in the Secret.
    #[serde(default = "default_webhook_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_webhook_key() -> String {
    "url".into()
}

/// The checks one piece of work runs, and the fault they are for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSelection {
    /// In order: readiness first.
    pub checks: Vec<String>,
    /// `{fault}` of the checks: the fault the matching rule named, else the event's first
    /// fault id, else its category.
    pub fault: Option<String>,
}

impl HealthChecks {
    /// The checks for a reboot (`faults` empty, no category) or for OCI work whose event
    /// has `faults` and `category`.
    pub fn select(
        &self,
        action: super::MaintenanceAction,
        faults: &[String],
        category: Option<&str>,
    ) -> CheckSelection {
        let mut checks: Vec<String> = self.readiness.iter().cloned().collect();
        let fault = match action {
            super::MaintenanceAction::Reboot => {
                checks.extend(self.reboot.iter().cloned());
                None
            }
            super::MaintenanceAction::OciMaintenance => {
                let matched = self.oci.iter().find_map(|rule| {
                    let hit = faults
                        .iter()
                        .map(String::as_str)
                        .chain(category)
                        .find(|f| rule.faults.iter().any(|r| r == f))?;
                    Some((rule, hit.to_string()))
                });
                match matched {
                    Some((rule, hit)) => {
                        checks.extend(rule.checks.iter().cloned());
                        Some(hit)
                    }
                    None => {
                        checks.extend(self.oci_default.iter().cloned());
                        faults.first().cloned().or(category.map(String::from))
                    }
                }
            }
        };
        let mut seen = std::collections::BTreeSet::new();
        checks.retain(|c| seen.insert(c.clone()));
        CheckSelection { checks, fault }
    }
}

/// How a node is rebooted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum RebootMethod {
    /// `scontrol reboot ASAP nextstate=RESUME reason=…`.
    #[default]
    Scontrol,
    /// The site reboot command configured on the agent.
    Command,
}

/// Preemptable jobs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreemptionSettings {
    /// Cancel preemptable jobs so a node's reservation can start now. Non-preemptable jobs
    /// are never ended.
    #[serde(default)]
    pub terminate_preemptable_jobs: bool,
    /// QOS names whose jobs count as preemptable, besides jobs Slurm itself marks
    /// preemptable (PreemptEligibleTime, or a partition whose PreemptMode is not OFF).
    #[serde(default = "default_qos")]
    #[schemars(length(max = 32), inner(regex(pattern = r"^[A-Za-z0-9_.-]{1,64}$")))]
    pub preemptable_qos: Vec<String>,
}

impl Default for PreemptionSettings {
    fn default() -> Self {
        Self {
            terminate_preemptable_jobs: false,
            preemptable_qos: default_qos(),
        }
    }
}

fn default_qos() -> Vec<String> {
    vec!["preemptable".into()]
}

/// The rolling-reboot campaign.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Campaign {
    /// Every node whose Slurm BootTime is older than this needs a reboot. Unset: no
    /// rolling reboot. Moving it later starts a new campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_required_before: Option<Timestamp>,
    /// When new work may start. Empty: any time. In-flight nodes finish outside windows.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub windows: Vec<MaintenanceWindow>,
}

/// Alerts in Prometheus that hold new work: while any named alert is firing
/// (`GET /api/v1/alerts`, state `firing`), or while Prometheus cannot say, no new work
/// starts. Asked once per pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!self.prometheusUrl.contains('?') && !self.prometheusUrl.contains('#')").message("blockers.prometheusUrl is the base URL of Prometheus: no query or fragment")
)]
pub struct Blockers {
    /// Base URL of Prometheus's HTTP API, e.g. `http://prometheus.monitoring:9090`
    /// (a path prefix such as `/prometheus` is kept).
    #[schemars(
        length(min = 1, max = 512),
        regex(pattern = r"^https?://[^\s/?#]+[^\s]*$")
    )]
    pub prometheus_url: String,
    /// Alert names (their `alertname` label) that hold new work while firing.
    #[schemars(
        length(min = 1, max = 32),
        inner(regex(pattern = r"^[A-Za-z_:][A-Za-z0-9_:]{0,127}$"))
    )]
    pub alerts: Vec<String>,
    /// Secret (in the policy's namespace) holding a bearer token for Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
    /// How long Prometheus may take to answer; no answer in time holds new work.
    #[serde(default = "default_blocker_timeout")]
    #[x_kube(validation = range_rule("blockers.timeout", "1s", "5m"))]
    pub timeout: Duration,
}

fn default_blocker_timeout() -> Duration {
    Duration::secs(10)
}

/// A recurring window during which new maintenance may start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.start != self.end").message("window start and end must differ"))]
pub struct MaintenanceWindow {
    /// Days of the week (`Mon` … `Sun`); empty means every day.
    #[serde(default)]
    #[schemars(length(max = 7))]
    pub days: Vec<Weekday>,
    /// Start time of day, `HH:MM`.
    #[schemars(length(max = 5), regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    /// End time of day, `HH:MM`; earlier than `start` means the window crosses midnight.
    #[schemars(length(max = 5), regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub end: String,
    /// IANA time zone of `start`/`end`, e.g. `Europe/Berlin`.
    #[serde(default = "default_tz")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_+/-]+$"))]
    pub time_zone: String,
}

fn default_tz() -> String {
    "UTC".into()
}

/// A day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// OCI instance maintenance events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.enabled || (has(self.tenancyId) && has(self.region))").message("oci.enabled requires tenancyId and region"))]
#[x_kube(validation = Rule::new("!self.enabled || (has(self.auth) && self.auth != 'ApiKey') || has(self.credentialsSecretRef)").message("oci.enabled with auth ApiKey requires credentialsSecretRef"))]
pub struct OciSettings {
    /// Discover and handle OCI maintenance events. Off by default.
    #[serde(default)]
    pub enabled: bool,
    /// Tenancy OCID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^ocid1\.tenancy\.[a-z0-9]+\.[a-z0-9-]*\.[a-z0-9.]+$"))]
    pub tenancy_id: Option<String>,
    /// Region identifier, e.g. `us-ashburn-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z]+-[a-z]+-[0-9]+$"))]
    pub region: Option<String>,
    /// Compartments to search (with their subtree). Empty: the whole tenancy.
    #[serde(default)]
    #[schemars(
        length(max = 256),
        inner(regex(
            pattern = r"^ocid1\.(compartment|tenancy)\.[a-z0-9]+\.[a-z0-9-]*\.[a-z0-9.]+$"
        ))
    )]
    pub compartments: Vec<String>,
    /// Override of the API endpoint (e.g. the emulator); normally derived from the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub endpoint: Option<String>,
    /// How the controller authenticates to OCI.
    #[serde(default)]
    pub auth: OciAuth,
    /// Secret with `config` (OCI config file, with `pass_phrase` for an encrypted key) and
    /// `key` (PEM private key); for auth `ApiKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretNameRef>,
    /// Fault ids (exact match, e.g. `HPCRDMA-0002-02`) whose events are handled
    /// automatically. Events with no approved fault id are only reported.
    #[serde(default)]
    #[schemars(length(max = 256), inner(regex(pattern = r"^[A-Za-z0-9_.-]{1,64}$")))]
    pub approved_fault_codes: Vec<String>,
    /// Slurm hosts never acted on.
    #[serde(default)]
    #[schemars(length(max = 4096), inner(regex(pattern = r"^[A-Za-z0-9_.-]{1,64}$")))]
    pub excluded_hosts: Vec<String>,
    /// At most this many events scheduled per UTC day (0: no cap).
    #[serde(default)]
    #[schemars(range(max = 10000))]
    pub daily_schedule_cap: u32,
    /// How an instance maps to a Slurm node.
    #[serde(default)]
    pub host_mapping: HostMapping,
    /// How often to list events.
    #[serde(default = "default_discovery_interval")]
    #[x_kube(validation = range_rule("oci.discoveryInterval", "1m", "24h"))]
    pub discovery_interval: Duration,
    /// How often to check a draining node.
    #[serde(default = "default_drain_poll")]
    #[x_kube(validation = range_rule("oci.drainPollInterval", "5s", "1h"))]
    pub drain_poll_interval: Duration,
    /// First poll interval of a running maintenance (backs off up to 4×).
    #[serde(default = "default_maint_poll")]
    #[x_kube(validation = range_rule("oci.maintenancePollInterval", "5s", "1h"))]
    pub maintenance_poll_interval: Duration,
    /// Scheduled window start = now + this.
    #[serde(default = "default_schedule_lead")]
    #[x_kube(validation = range_rule("oci.scheduleLeadTime", "5s", "168h"))]
    pub schedule_lead_time: Duration,
    /// An event OCI will not move (`canReschedule` false, or past its hard due date)
    /// keeps its own window: its node is drained no earlier than this before the window,
    /// so running jobs can end without holding the node out for days.
    #[serde(default = "default_drain_ahead")]
    #[x_kube(validation = range_rule("oci.drainAhead", "0s", "720h"))]
    pub drain_ahead: Duration,
}

impl Default for OciSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            tenancy_id: None,
            region: None,
            compartments: vec![],
            endpoint: None,
            auth: OciAuth::default(),
            credentials_secret_ref: None,
            approved_fault_codes: vec![],
            excluded_hosts: vec![],
            daily_schedule_cap: 0,
            host_mapping: HostMapping::default(),
            discovery_interval: default_discovery_interval(),
            drain_poll_interval: default_drain_poll(),
            maintenance_poll_interval: default_maint_poll(),
            schedule_lead_time: default_schedule_lead(),
            drain_ahead: default_drain_ahead(),
        }
    }
}

fn default_discovery_interval() -> Duration {
    Duration::mins(15)
}
fn default_drain_poll() -> Duration {
    Duration::secs(30)
}
fn default_maint_poll() -> Duration {
    Duration::secs(30)
}
fn default_schedule_lead() -> Duration {
    Duration::mins(2)
}
fn default_drain_ahead() -> Duration {
    Duration::hours(12)
}

/// How the controller authenticates to OCI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
pub enum OciAuth {
    /// A user's API key from `credentialsSecretRef`.
    #[default]
    ApiKey,
    /// OKE workload identity: the controller pod's ServiceAccount, exchanged for a
    /// resource principal session token.
    WorkloadIdentity,
    /// Instance principals: the identity certificate of the instance the controller runs
    /// on, federated for a security token.
    InstancePrincipal,
}

/// A Secret in the policy's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretNameRef {
    /// Secret name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// Mapping from an OCI instance to a Slurm node name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.source != 'FreeformTag' || has(self.tagKey)").message("hostMapping.source FreeformTag requires tagKey"))]
#[x_kube(validation = Rule::new("self.source != 'ConfigMap' || has(self.configMapName)").message("hostMapping.source ConfigMap requires configMapName"))]
pub struct HostMapping {
    /// Where the node name comes from.
    #[serde(default)]
    pub source: HostMappingSource,
    /// Freeform tag key holding the node name (source FreeformTag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub tag_key: Option<String>,
    /// ConfigMap whose data maps instance OCID → node name (source ConfigMap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub config_map_name: Option<String>,
}

impl Default for HostMapping {
    fn default() -> Self {
        Self {
            source: HostMappingSource::DisplayName,
            tag_key: None,
            config_map_name: None,
        }
    }
}

/// Source of the instance → node mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum HostMappingSource {
    /// The instance's display name is the node name.
    #[default]
    DisplayName,
    /// A freeform tag holds the node name.
    FreeformTag,
    /// An explicit ConfigMap.
    ConfigMap,
}

/// Observed state of a policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct MaintenancePolicyStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Budget figures of the partition at the last pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetStatus>,
    /// Nodes in scope that need work in the current campaign.
    #[serde(default)]
    pub nodes_needing_work: u32,
    /// NodeMaintenances by phase.
    #[serde(default)]
    pub phases: PhaseCounts,
    /// The next nodes to start, in order, with their planned start (a plan preview).
    #[serde(default)]
    pub next: Vec<PlannedNode>,
    /// Actions the last pass intended (in dry run: what would have been done).
    #[serde(default)]
    pub planned_actions: Vec<String>,
    /// Estimated completion of the campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<Timestamp>,
    /// When the last pass ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass: Option<Timestamp>,
    /// Ready, Progressing, Degraded, BudgetExhausted, Paused, and Blocked when
    /// `spec.blockers` is set.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Budget figures for one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    /// Partition name.
    pub partition: String,
    /// Nodes in the partition.
    pub total: u32,
    /// Nodes out for maintenance now (an active MAINT reservation, or being worked on).
    pub unavailable: u32,
    /// Nodes Slurm has DOWN/DRAIN/FAIL/NOT_RESPONDING/POWER_DOWN.
    pub down: u32,
    /// |unavailable ∪ down|: nodes out now.
    pub combined: u32,
    /// |unavailable ∩ down|.
    pub overlap: u32,
    /// |unavailable ∪ down ∪ nodes committed to a reservation not yet started|; the
    /// reservations ahead hold the budget only over their own intervals.
    pub committed: u32,
    /// The most nodes out at any moment from now on on the budget's timeline (out now,
    /// and every committed reservation over its expected interval): never above
    /// `allowed` by our doing.
    #[serde(default)]
    pub peak: u32,
    /// Nodes allowed out at once.
    pub allowed: u32,
    /// Per-domain figures, with `budget.topology`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<TopologyStatus>,
}

/// Per-domain budget figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopologyStatus {
    /// `Spread` or `WholeDomain`.
    pub mode: String,
    /// Domains of the partition.
    pub domains: u32,
    /// Domains with a node out now (maintenance or down).
    pub domains_out: u32,
    /// The most nodes out now in any one domain.
    pub max_out_in_a_domain: u32,
    /// Nodes allowed out per domain (`Spread`), or the largest domain (`WholeDomain`).
    pub allowed_per_domain: u32,
    /// Partition nodes no domain holds (each counts as a domain of its own).
    pub unplaced: u32,
    /// Domains with a node out or committed, by name (at most 64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub busy: Vec<DomainFigures>,
}

/// One domain's figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct DomainFigures {
    /// The domain: a switch, a block or a feature.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Nodes of the partition in the domain.
    pub total: u32,
    /// Nodes out now (maintenance ∪ down).
    pub out: u32,
    /// Nodes committed to a reservation not yet started.
    pub committed: u32,
}

/// Count of NodeMaintenances per phase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PhaseCounts {
    /// Waiting to start.
    pub pending: u32,
    /// Reservation created, waiting for jobs to end.
    pub reserved: u32,
    /// Reservation active, waiting for budget to reboot.
    pub pending_reboot: u32,
    /// Reboot issued.
    pub rebooting: u32,
    /// Waiting for the node to return to service.
    pub recovering: u32,
    /// Running the health check.
    pub health_check: u32,
    /// Done.
    pub completed: u32,
    /// Gave up after max attempts; node kept drained.
    pub failed: u32,
}

/// A node in the plan preview.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedNode {
    /// Slurm node name.
    pub node: String,
    /// When its jobs end and maintenance can start; unset when a job has no time limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_time: Option<Timestamp>,
    /// Why it has not started yet (budget full, outside the windows, paused, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::super::MaintenanceAction;

    #[test]
    fn health_checks_are_chosen_by_work_and_fault() {
        let hc: HealthChecks = serde_json::from_value(serde_json::json!({
            "readiness": "ready",
            "reboot": ["gpu-ecc"],
            "oci": [
                {"faults": ["HPCGPU-0001-01", "HPCGPU-0002-01"], "checks": ["gpu-dcgm", "gpu-ecc"]},
                {"faults": ["HPCRDMA-0002-02"], "checks": ["nccl"]},
                {"faults": ["HARDWARE"], "checks": ["hpl"]}
            ],
            "ociDefault": ["default", "ready"]
        }))
        .unwrap();
        let sel = |action, faults: &[&str], category: Option<&str>| {
            let faults: Vec<String> = faults.iter().map(|f| f.to_string()).collect();
            let s = hc.select(action, &faults, category);
            (s.checks, s.fault)
        };
        assert_eq!(
            sel(MaintenanceAction::Reboot, &[], None),
            (vec!["ready".into(), "gpu-ecc".into()], None)
        );
        assert_eq!(
            sel(
                MaintenanceAction::OciMaintenance,
                &["HPCGPU-0002-01"],
                Some("HARDWARE")
            ),
            (
                vec!["ready".into(), "gpu-dcgm".into(), "gpu-ecc".into()],
                Some("HPCGPU-0002-01".into())
            ),
            "the first rule that names a fault, before a category rule"
        );
        assert_eq!(
            sel(
                MaintenanceAction::OciMaintenance,
                &["OTHER-1", "HPCRDMA-0002-02"],
                None
            )
            .1,
            Some("HPCRDMA-0002-02".into()),
            "the fault the rule named"
        );
        assert_eq!(
            sel(
                MaintenanceAction::OciMaintenance,
                &["OTHER-1"],
                Some("HARDWARE")
            ),
            (vec!["ready".into(), "hpl".into()], Some("HARDWARE".into()))
        );
        assert_eq!(
            sel(MaintenanceAction::OciMaintenance, &["hpcgpu-0001-01"], None),
            (
                vec!["ready".into(), "default".into()],
                Some("hpcgpu-0001-01".into())
            ),
            "exact match only; the default, readiness once"
        );
        assert_eq!(
            sel(MaintenanceAction::OciMaintenance, &[], None),
            (vec!["ready".into(), "default".into()], None)
        );
    }

    use super::*;

    /// `Default` in Rust and defaults applied by serde (and the API server) agree.
    #[test]
    fn rust_defaults_equal_serde_defaults() {
        let from_empty = |v: &str| -> MaintenancePolicySpec {
            serde_json::from_str(&format!(
                r#"{{"partition":"p","agent":{{"url":"http://a","tokenSecretRef":{{"name":"s"}}}}{v}}}"#
            ))
            .unwrap()
        };
        let spec = from_empty("");
        assert_eq!(spec.budget, Budget::default());
        assert_eq!(spec.reservations, ReservationSettings::default());
        assert_eq!(spec.reboots, RebootSettings::default());
        assert_eq!(spec.preemption, PreemptionSettings::default());
        assert_eq!(spec.oci, OciSettings::default());
        assert_eq!(spec.campaign, Campaign::default());
        let nested = from_empty(r#","budget":{},"reservations":{},"reboots":{},"oci":{}"#);
        assert_eq!(nested, spec);
        assert_eq!(spec.budget.reservation_lead_time, Duration::mins(60));
        assert_eq!(spec.reboots.max_attempts, 3);
        assert_eq!(spec.reboots.timeout, Duration::secs(600));
        assert_eq!(spec.interval, Duration::secs(60));
        assert!(!spec.reservations.enabled && !spec.reboots.enabled && !spec.dry_run);
    }
}
