//! OCI discovery: lists the maintenance events of a policy's tenancy (or chosen
//! compartments with their subtrees), reads each one's fault details, maps its instance
//! to a Slurm node, decides about it (see [`crate::oci::approve`]) and mirrors it into
//! an `OciMaintenanceEvent` owned by the policy, with the decision in status.
//!
//! The discovery loop ([`super::discovery`]) calls [`discover`] once per
//! `spec.oci.discoveryInterval` when `spec.oci.enabled`, with a client built by
//! [`client_for_policy`]. Approved events become OCI work in [`super::oci_work`].
//!
//! Decisions are sticky once approved (an approved event is never re-decided, so the
//! daily cap cannot revoke it), other decisions are re-evaluated every pass (settings
//! may change). Events with a NodeMaintenance or an outcome are `AlreadyProcessed`.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::POLICY_LABEL;
use crate::api::oci_event::Approval;
use crate::api::policy::HostMappingSource;
use crate::api::{MaintenancePolicy, OciMaintenanceEvent, OciMaintenanceEventSpec};
use crate::oci::approve::{self, Candidate, reason};
use crate::oci::model::{Compartment, Instance, InstanceMaintenanceEvent, ListEventsFilter};
use crate::oci::{ApiKey, Endpoints, OciClient, OciError};

/// Field manager of the mirrored specs.
pub const DISCOVERY_MANAGER: &str = "slurm-maint-oci-discovery";

/// What can stop a discovery pass.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("OCI: {0}")]
    Oci(#[from] OciError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("invalid policy: {0}")]
    Invalid(String),
}

/// The result of one pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiscoveryReport {
    /// Compartments searched.
    pub compartments: usize,
    /// Events listed.
    pub events: usize,
    /// OciMaintenanceEvents created.
    pub created: usize,
    /// Events approved in this pass (newly).
    pub approved: usize,
    /// Finished events already mirrored as finished (not read again).
    pub unchanged: usize,
    /// Events with warnings (bad data, unknown values, no host).
    pub with_warnings: usize,
    /// Per-event failures that did not stop the pass.
    pub errors: Vec<String>,
}

/// An OCI client for a policy: credentials by `spec.oci.auth` (the API key of its
/// Secret, `config` + `key`; or OKE workload identity or instance principals, both from
/// the controller's environment and shared by every policy, so tokens are cached across
/// passes), the endpoint from `spec.oci.endpoint` or the region.
pub async fn client_for_policy(
    kube: &kube::Client,
    policy: &MaintenancePolicy,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
) -> Result<OciClient, DiscoveryError> {
    use crate::api::policy::OciAuth;
    use crate::oci::auth::{Credentials, InstancePrincipal, SessionSource, WorkloadIdentity};
    let oci = &policy.spec.oci;
    let (credentials, fallback_region) = match oci.auth {
        OciAuth::ApiKey => {
            let ns = policy.namespace().unwrap_or_default();
            let secret = oci.credentials_secret_ref.as_ref().ok_or_else(|| {
                DiscoveryError::Invalid("oci.credentialsSecretRef is not set".into())
            })?;
            let key = ApiKey::from_kube_secret(kube.clone(), &ns, &secret.name).await?;
            (Credentials::api_key(&key), key.region)
        }
        OciAuth::WorkloadIdentity => {
            let w = WorkloadIdentity::from_vars(env)?;
            let region = w.region.clone();
            (
                Credentials::shared_session(SessionSource::WorkloadIdentity(w)),
                region,
            )
        }
        OciAuth::InstancePrincipal => (
            Credentials::shared_session(SessionSource::InstancePrincipal(
                InstancePrincipal::from_vars(env),
            )),
            None,
        ),
    };
    let endpoints = match (&oci.endpoint, &oci.region, &fallback_region) {
        (Some(e), _, _) => Endpoints::single(e),
        (None, Some(r), _) | (None, None, Some(r)) => Endpoints::for_region(r),
        (None, None, None) => {
            return Err(DiscoveryError::Invalid("oci.region is not set".into()));
        }
    };
    Ok(OciClient::with_credentials(credentials, endpoints)?)
}

/// The compartments to search: all (tenancy included) when `roots` is empty, else each
/// root with its subtree.
pub fn select_compartments(all: &[Compartment], roots: &[String]) -> Vec<String> {
    if roots.is_empty() {
        return all.iter().map(|c| c.id.clone()).collect();
    }
    let parent: HashMap<&str, &str> = all
        .iter()
        .map(|c| (c.id.as_str(), c.compartment_id.as_str()))
        .collect();
    let under_root = |id: &str| {
        let mut cur = id;
        for _ in 0..64 {
            if roots.iter().any(|r| r == cur) {
                return true;
            }
            match parent.get(cur) {
                Some(p) if *p != cur => cur = p,
                _ => return false,
            }
        }
        false
    };
    let mut out: Vec<String> = all
        .iter()
        .filter(|c| under_root(&c.id))
        .map(|c| c.id.clone())
        .collect();
    for r in roots {
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    out
}

/// One discovery pass for `policy` (which must exist: it owns the mirrors). `recorder`
/// publishes Kubernetes Events when given.
pub async fn discover(
    kube: &kube::Client,
    recorder: Option<&Recorder>,
    oci: &OciClient,
    policy: &MaintenancePolicy,
    now: Timestamp,
) -> Result<DiscoveryReport, DiscoveryError> {
    let settings = &policy.spec.oci;
    if !settings.enabled {
        return Ok(DiscoveryReport::default());
    }
    let tenancy = settings
        .tenancy_id
        .as_deref()
        .ok_or_else(|| DiscoveryError::Invalid("oci.tenancyId is not set".into()))?;
    let ns = policy
        .namespace()
        .ok_or_else(|| DiscoveryError::Invalid("the policy has no namespace".into()))?;
    let all = oci.list_compartments(tenancy).await?;
    let compartments = select_compartments(&all, &settings.compartments);
    let events = list_events(oci, &compartments).await?;
    let api: Api<OciMaintenanceEvent> = Api::namespaced(kube.clone(), &ns);
    let mut round = Round::start(kube, recorder, oci, policy, api, &compartments, now).await?;
    round.report.compartments = compartments.len();
    round.report.events = events.len();
    for summary in events {
        round.mirror(summary).await;
    }
    Ok(round.report)
}

/// The events of every compartment, oldest first, each once.
async fn list_events(
    oci: &OciClient,
    compartments: &[String],
) -> Result<Vec<InstanceMaintenanceEvent>, OciError> {
    let mut events: Vec<InstanceMaintenanceEvent> = vec![];
    for c in compartments {
        let filter = ListEventsFilter::compartment(c.clone());
        events.extend(oci.list_instance_maintenance_events(&filter).await?);
    }
    events.sort_by(|a, b| (a.time_created, &a.id).cmp(&(b.time_created, &b.id)));
    events.dedup_by(|a, b| a.id == b.id);
    Ok(events)
}

/// One discovery round of a policy: what it read once, and what it found so far.
struct Round<'a> {
    recorder: Option<&'a Recorder>,
    oci: &'a OciClient,
    policy: &'a MaintenancePolicy,
    api: Api<OciMaintenanceEvent>,
    now: Timestamp,
    /// The policy's mirrors, by event id.
    existing: HashMap<String, OciMaintenanceEvent>,
    /// Events approved by fault code on the current day (the daily cap).
    approved_today: u32,
    /// The host mapping ConfigMap's data, when the mapping uses one.
    config_map: Option<BTreeMap<String, String>>,
    /// Instances by id (`None`: OCI has no such instance).
    instances: HashMap<String, Option<Instance>>,
    report: DiscoveryReport,
}

impl<'a> Round<'a> {
    /// Read what every event of the round needs: the mirrors, the day's approvals, the
    /// host mapping and (one ListInstances per compartment rather than a GetInstance
    /// per event) the instances.
    async fn start(
        kube: &kube::Client,
        recorder: Option<&'a Recorder>,
        oci: &'a OciClient,
        policy: &'a MaintenancePolicy,
        api: Api<OciMaintenanceEvent>,
        compartments: &[String],
        now: Timestamp,
    ) -> Result<Self, DiscoveryError> {
        let settings = &policy.spec.oci;
        let ns = policy.namespace().unwrap_or_default();
        let selector = format!("{POLICY_LABEL}={}", policy.name_any());
        let existing: HashMap<String, OciMaintenanceEvent> = api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .map(|o| (o.spec.event_id.clone(), o))
            .collect();
        let approved_today = approve::scheduled_on_day(
            now,
            existing
                .values()
                .filter_map(|o| o.status.as_ref()?.approval.as_ref())
                .filter(|a| a.approved && a.reason == reason::APPROVED_FAULT_CODE)
                .map(|a| a.decided_at),
        );
        let mut config_map = None;
        let mut instances = HashMap::new();
        match (
            settings.host_mapping.source,
            &settings.host_mapping.config_map_name,
        ) {
            (HostMappingSource::ConfigMap, Some(name)) => {
                config_map = Api::<ConfigMap>::namespaced(kube.clone(), &ns)
                    .get_opt(name)
                    .await?
                    .and_then(|c| c.data);
            }
            (HostMappingSource::ConfigMap, None) => {}
            _ => {
                for c in compartments {
                    for i in oci.list_instances(c).await? {
                        instances.insert(i.id.clone(), Some(i));
                    }
                }
            }
        }
        Ok(Self {
            recorder,
            oci,
            policy,
            api,
            now,
            existing,
            approved_today,
            config_map,
            instances,
            report: DiscoveryReport::default(),
        })
    }

    /// Read, decide and mirror one event; a failure is noted in the report.
    async fn mirror(&mut self, summary: InstanceMaintenanceEvent) {
        let old = self.existing.get(&summary.id).cloned();
        // Finished and already mirrored as finished: nothing can change any more.
        if let Some(o) = &old
            && approve::is_terminal(&summary.lifecycle_state)
            && o.spec.lifecycle_state == summary.lifecycle_state
            && o.status.as_ref().is_some_and(|s| s.approval.is_some())
        {
            self.report.unchanged += 1;
            return;
        }
        let mut warnings = vec![];
        // Fault details are only in a GET.
        let full = match self.oci.get_instance_maintenance_event(&summary.id).await {
            Ok((e, _)) => e,
            Err(e) if e.status() == Some(404) => {
                warnings.push(format!("event vanished between list and get: {e}"));
                summary.clone()
            }
            Err(e) => {
                self.report.errors.push(format!("{}: {e}", summary.id));
                return;
            }
        };
        let faults = approve::parse_faults(full.additional_details.as_ref());
        warnings.extend(faults.warnings.iter().cloned());
        warnings.extend(approve::unknown_values(&full));
        let Some(instance) = self.instance(&full.instance_id).await else {
            return;
        };
        let host = match approve::map_host(
            &self.policy.spec.oci.host_mapping,
            &full.instance_id,
            instance.as_ref(),
            self.config_map.as_ref(),
        ) {
            Ok(h) => Some(h),
            Err(w) => {
                warnings.push(w);
                None
            }
        };
        let spec = self.spec_of(&full, instance.as_ref(), &faults, host);
        let old_status = old
            .as_ref()
            .and_then(|o| o.status.clone())
            .unwrap_or_default();
        let approval = self.approval(&spec, &old_status);
        if !warnings.is_empty() {
            self.report.with_warnings += 1;
        }
        self.write(old.as_ref(), spec, &approval, &old_status, warnings)
            .await;
    }

    /// The event's instance, read when the round's listing did not have it; `None` when
    /// it could not be read (noted); `Some(None)` when the mapping needs no instance or
    /// OCI has no such instance.
    async fn instance(&mut self, id: &str) -> Option<Option<Instance>> {
        if self.policy.spec.oci.host_mapping.source == HostMappingSource::ConfigMap {
            return Some(None);
        }
        if let Some(i) = self.instances.get(id) {
            return Some(i.clone());
        }
        let got = match self.oci.get_instance(id).await {
            Ok(i) => Some(i),
            Err(e) if e.status() == Some(404) => None,
            Err(e) => {
                self.report.errors.push(format!("{id}: {e}"));
                return None;
            }
        };
        self.instances.insert(id.to_string(), got.clone());
        Some(got)
    }

    fn spec_of(
        &self,
        full: &InstanceMaintenanceEvent,
        instance: Option<&Instance>,
        faults: &approve::Faults,
        host: Option<String>,
    ) -> OciMaintenanceEventSpec {
        OciMaintenanceEventSpec {
            event_id: full.id.clone(),
            instance_id: full.instance_id.clone(),
            instance_name: instance.and_then(|i| i.display_name.clone()),
            compartment_id: full.compartment_id.clone(),
            policy: self.policy.name_any(),
            slurm_node: host,
            fault_ids: faults.ids.clone(),
            fault_summary: faults.summary.clone(),
            maintenance_category: full.maintenance_category.clone(),
            maintenance_reason: full.maintenance_reason.clone(),
            instance_action: full.instance_action.clone(),
            lifecycle_state: full.lifecycle_state.clone(),
            can_reschedule: full.can_reschedule,
            time_window_start: full.time_window_start,
            time_hard_due_date: full.time_hard_due_date,
            time_created: full.time_created,
        }
    }

    /// The event's decision: an approval by fault code (or an AlreadyProcessed one)
    /// sticks; others are decided again (settings may change), keeping the time of a
    /// decision that did not change.
    fn approval(
        &mut self,
        spec: &OciMaintenanceEventSpec,
        old: &crate::api::oci_event::OciMaintenanceEventStatus,
    ) -> Approval {
        let already_processed = old.node_maintenance.is_some() || old.outcome.is_some();
        let sticky = old.approval.as_ref().filter(|a| {
            a.approved
                && (a.reason == reason::APPROVED_FAULT_CODE
                    || a.reason == reason::ALREADY_PROCESSED)
        });
        let approval = match sticky {
            Some(a) if !already_processed || a.reason == reason::ALREADY_PROCESSED => a.clone(),
            _ => {
                let d = approve::decide(
                    &self.policy.spec.oci,
                    &Candidate {
                        lifecycle_state: &spec.lifecycle_state,
                        fault_ids: &spec.fault_ids,
                        host: spec.slurm_node.as_deref(),
                        already_processed,
                        approved_today: self.approved_today,
                    },
                );
                let decided_at = match &old.approval {
                    Some(a) if a.reason == d.reason && a.approved == d.approved => a.decided_at,
                    _ => self.now,
                };
                Approval {
                    approved: d.approved,
                    reason: d.reason.to_string(),
                    message: d.message,
                    decided_at,
                }
            }
        };
        if approval.approved
            && approval.reason == reason::APPROVED_FAULT_CODE
            && old.approval.as_ref() != Some(&approval)
        {
            self.approved_today += 1;
            self.report.approved += 1;
        }
        approval
    }

    /// Apply the mirror's spec, merge its decision into status, and announce a changed
    /// decision (audit line, Event).
    async fn write(
        &mut self,
        old: Option<&OciMaintenanceEvent>,
        spec: OciMaintenanceEventSpec,
        approval: &Approval,
        old_status: &crate::api::oci_event::OciMaintenanceEventStatus,
        warnings: Vec<String>,
    ) {
        let name = old
            .map(|o| o.name_any())
            .unwrap_or_else(|| approve::resource_name(&spec.event_id));
        let obj = json!({
            "apiVersion": "slurm-maint.io/v1alpha1",
            "kind": "OciMaintenanceEvent",
            "metadata": {
                "name": name,
                "labels": {POLICY_LABEL: self.policy.name_any()},
                "ownerReferences": self.policy.controller_owner_ref(&()).map(|o| vec![o]),
            },
            "spec": spec,
        });
        let pp = PatchParams::apply(DISCOVERY_MANAGER).force();
        let applied = match self.api.patch(&name, &pp, &Patch::Apply(&obj)).await {
            Ok(a) => a,
            Err(e) => {
                self.report.errors.push(format!("{name}: {e}"));
                return;
            }
        };
        if old.is_none() {
            self.report.created += 1;
        }
        // A merge patch: fields the workflow owns (nodeMaintenance, workRequestId,
        // outcome, conditions) are left alone.
        let status = json!({"status": {
            "approval": approval,
            "warnings": warnings,
            "observedGeneration": applied.metadata.generation,
        }});
        let pp = PatchParams::default();
        if let Err(e) = self
            .api
            .patch_status(&name, &pp, &Patch::Merge(&status))
            .await
        {
            self.report.errors.push(format!("{name} status: {e}"));
            return;
        }
        let changed = old_status
            .approval
            .as_ref()
            .map(|a| (&a.reason, a.approved))
            != Some((&approval.reason, approval.approved));
        if changed || old.is_none() {
            self.announce(&applied, &spec, approval, warnings.is_empty())
                .await;
        }
    }

    async fn announce(
        &self,
        applied: &OciMaintenanceEvent,
        spec: &OciMaintenanceEventSpec,
        approval: &Approval,
        no_warnings: bool,
    ) {
        tracing::info!(
            target: "audit",
            phase = "discovery",
            action = if approval.approved { "approved" } else { "not_approved" },
            event_id = %spec.event_id,
            host = spec.slurm_node.as_deref().unwrap_or(""),
            reason = %approval.reason,
            lifecycle_state = %spec.lifecycle_state,
            faults = %spec.fault_ids.join(","),
            "OCI maintenance event decided"
        );
        let Some(rec) = self.recorder else {
            return;
        };
        let ev = Event {
            type_: if approval.approved || no_warnings {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: approval.reason.clone(),
            note: Some(truncate(&approval.message, 1000)),
            action: "Discover".into(),
            secondary: None,
        };
        if let Err(e) = rec.publish(&ev, &applied.object_ref(&())).await {
            tracing::debug!(error = %e, "event not published");
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// What the drain of an event's node says after our prefix: the fault summary (else the
/// category and reason), made safe for Slurm and short enough for the agent's limit.
pub fn drain_reason(spec: &OciMaintenanceEventSpec) -> String {
    let what = spec
        .fault_summary
        .clone()
        .unwrap_or_else(|| format!("{} {}", spec.maintenance_category, spec.maintenance_reason));
    let budget = crate::agent::validate::MAX_REASON - crate::plan::REASON_PREFIX.len();
    crate::agent::validate::boring_text(&format!("OCI maintenance: {what}"), budget)
}

/// Counts of mirrors by approval reason (for status/metrics).
pub fn decisions_by_reason(objs: &[OciMaintenanceEvent]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for o in objs {
        if let Some(a) = o.status.as_ref().and_then(|s| s.approval.as_ref()) {
            *m.entry(a.reason.clone()).or_insert(0) += 1;
        }
    }
    m
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::PostParams;

    use super::*;
    use crate::apiserver::ApiServer;
    use crate::oci::emulator::scenario::fault_details;
    use crate::oci::emulator::{Emulator, Scenario};

    const TENANCY: &str = "ocid1.tenancy.oc1..aaaaaaaatest";
    pub(crate) const KEY_PEM: &str = crate::oci::tests::KEY_PEM;

    pub(crate) fn scenario() -> Scenario {
        let mut sc = Scenario::parse(&format!(
            "tenancy: {TENANCY}\ngenerate: {{compartments: 2, instances: 8, events: 8, faultIds: [HPCRDMA-0002-02]}}\n"
        ))
        .unwrap();
        sc.expand(Timestamp::now());
        sc.events[2].event.additional_details = Some(fault_details(&["OTHER-0001-01"]));
        sc.instances[3].display_name = Some("gpu-666".into());
        sc.events[4].event.additional_details = Some(BTreeMap::from([(
            "faultDetails".to_string(),
            "{not json".to_string(),
        )]));
        sc.instances[5].display_name = None;
        sc.events[6].event.maintenance_category = "SOMEDAY".into();
        sc
    }

    pub(crate) async fn policy(kube: &kube::Client, endpoint: &str) -> MaintenancePolicy {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "oci", "namespace": "default"},
            "data": {
                "config": B64.encode(format!("[DEFAULT]\nuser=ocid1.user.oc1..u\ntenancy={TENANCY}\nkey_file=/unused\n")),
                "key": B64.encode(KEY_PEM),
            }
        }))
        .unwrap();
        Api::<Secret>::namespaced(kube.clone(), "default")
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
        let p: MaintenancePolicy = serde_json::from_value(json!({
            "apiVersion": "slurm-maint.io/v1alpha1",
            "kind": "MaintenancePolicy",
            "metadata": {"name": "compute", "namespace": "default"},
            "spec": {
                "partition": "compute",
                "agent": {"url": "http://agent:8080", "tokenSecretRef": {"name": "t"}},
                "oci": {
                    "enabled": true,
                    "tenancyId": TENANCY,
                    "region": "us-ashburn-1",
                    "endpoint": endpoint,
                    "credentialsSecretRef": {"name": "oci"},
                    "approvedFaultCodes": ["HPCRDMA-0002-02"],
                    "excludedHosts": ["gpu-666"],
                    "dailyScheduleCap": 2
                }
            }
        }))
        .unwrap();
        Api::<MaintenancePolicy>::namespaced(kube.clone(), "default")
            .create(&PostParams::default(), &p)
            .await
            .unwrap()
    }

    fn by_event(objs: &[OciMaintenanceEvent], i: usize) -> &OciMaintenanceEvent {
        let id = format!("ocid1.instancemaintenanceevent.oc1..gen{i}");
        objs.iter().find(|o| o.spec.event_id == id).unwrap()
    }

    fn approval(o: &OciMaintenanceEvent) -> (bool, String) {
        let a = o.status.as_ref().unwrap().approval.as_ref().unwrap();
        (a.approved, a.reason.clone())
    }

    #[tokio::test]
    async fn discovery_mirrors_events_with_decisions() {
        let key = crate::oci::config::parse_private_key(KEY_PEM, None).unwrap();
        let emu = Emulator::new(scenario(), vec![key.to_public_key()]);
        let (addr, _task) = emu.start("127.0.0.1:0").await.unwrap();
        let server = ApiServer::with_crds(&crate::api::crds());
        let kube = server.client();
        let pol = policy(&kube, &format!("http://{addr}")).await;
        let oci = client_for_policy(&kube, &pol, &|k| std::env::var(k).ok())
            .await
            .unwrap();
        let now = Timestamp::now();

        let r = discover(&kube, None, &oci, &pol, now).await.unwrap();
        assert_eq!(r.errors, Vec::<String>::new());
        assert_eq!((r.compartments, r.events, r.created), (3, 8, 8));
        assert_eq!(r.approved, 2);
        assert_eq!(
            r.with_warnings, 3,
            "malformed details, no host, unknown category"
        );

        let api: Api<OciMaintenanceEvent> = Api::namespaced(kube.clone(), "default");
        let objs = api.list(&ListParams::default()).await.unwrap().items;
        assert_eq!(objs.len(), 8);
        let want = [
            (true, reason::APPROVED_FAULT_CODE),
            (true, reason::APPROVED_FAULT_CODE),
            (false, reason::NO_APPROVED_FAULT_CODE),
            (false, reason::EXCLUDED_HOST),
            (false, reason::NO_APPROVED_FAULT_CODE),
            (false, reason::NO_HOST_MAPPING),
            (false, reason::DAILY_CAP_REACHED),
            (false, reason::DAILY_CAP_REACHED),
        ];
        for (i, (ok, why)) in want.iter().enumerate() {
            assert_eq!(
                approval(by_event(&objs, i)),
                (*ok, why.to_string()),
                "event {i}"
            );
        }
        let e0 = by_event(&objs, 0);
        assert_eq!(e0.spec.slurm_node.as_deref(), Some("gpu-001"));
        assert_eq!(e0.spec.fault_ids, ["HPCRDMA-0002-02"]);
        assert!(
            e0.spec
                .fault_summary
                .as_deref()
                .unwrap()
                .starts_with("HPCRDMA-0002-02")
        );
        assert_eq!(e0.spec.policy, "compute");
        assert_eq!(e0.labels()[POLICY_LABEL], "compute");
        assert_eq!(e0.owner_references()[0].uid, pol.uid().unwrap());
        assert!(e0.status.as_ref().unwrap().warnings.is_empty());
        let e4 = by_event(&objs, 4);
        assert!(e4.spec.fault_ids.is_empty());
        assert!(e4.status.as_ref().unwrap().warnings[0].contains("not JSON"));
        let e5 = by_event(&objs, 5);
        assert_eq!(e5.spec.slurm_node, None);
        assert!(e5.status.as_ref().unwrap().warnings[0].contains("displayName"));
        let e6 = by_event(&objs, 6);
        assert!(e6.status.as_ref().unwrap().warnings[0].contains("SOMEDAY"));
        assert_eq!(e6.spec.maintenance_category, "SOMEDAY");

        // Again: nothing new, the approvals stand (the cap does not revoke them).
        let r2 = discover(&kube, None, &oci, &pol, now).await.unwrap();
        assert_eq!((r2.created, r2.approved), (0, 0));
        let objs2 = api.list(&ListParams::default()).await.unwrap().items;
        for i in 0..8 {
            assert_eq!(approval(by_event(&objs2, i)), approval(by_event(&objs, i)));
        }

        // The workflow records its NodeMaintenance: the next pass says AlreadyProcessed
        // and keeps the workflow's fields.
        let name = e0.name_any();
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"nodeMaintenance": "gpu-001-oci"}})),
        )
        .await
        .unwrap();
        // The next UTC day: the cap has room again.
        let tomorrow = now + jiff::SignedDuration::from_hours(24);
        let r3 = discover(&kube, None, &oci, &pol, tomorrow).await.unwrap();
        assert_eq!(r3.approved, 2, "events 6 and 7 fit tomorrow's cap");
        let objs3 = api.list(&ListParams::default()).await.unwrap().items;
        let e0 = by_event(&objs3, 0);
        assert_eq!(approval(e0), (true, reason::ALREADY_PROCESSED.to_string()));
        assert_eq!(
            e0.status.as_ref().unwrap().node_maintenance.as_deref(),
            Some("gpu-001-oci")
        );
        assert!(approval(by_event(&objs3, 6)).0);
        assert_eq!(decisions_by_reason(&objs3)[reason::APPROVED_FAULT_CODE], 3);

        // An event that finishes is mirrored once more as finished, then left alone.
        let wr = oci
            .update_instance_maintenance_event(
                "ocid1.instancemaintenanceevent.oc1..gen1",
                &crate::oci::model::UpdateInstanceMaintenanceEventDetails {
                    time_window_start: Some(emu.now() + jiff::SignedDuration::from_secs(60)),
                    ..Default::default()
                },
                None,
                None,
            )
            .await
            .unwrap();
        assert!(!wr.is_empty());
        emu.advance(std::time::Duration::from_secs(120));
        let r4 = discover(&kube, None, &oci, &pol, tomorrow).await.unwrap();
        assert_eq!(r4.unchanged, 0);
        let objs4 = api.list(&ListParams::default()).await.unwrap().items;
        assert_eq!(by_event(&objs4, 1).spec.lifecycle_state, "SUCCEEDED");
        let r5 = discover(&kube, None, &oci, &pol, tomorrow).await.unwrap();
        assert_eq!(r5.unchanged, 1);
        assert_eq!(r5.errors, Vec::<String>::new());
    }

    #[test]
    fn compartment_selection_follows_subtrees() {
        let c = |id: &str, parent: &str| Compartment {
            id: id.into(),
            compartment_id: parent.into(),
            ..Default::default()
        };
        let all = [
            c("t", "t"),
            c("a", "t"),
            c("b", "a"),
            c("c", "t"),
            c("d", "b"),
        ];
        assert_eq!(select_compartments(&all, &[]).len(), 5);
        assert_eq!(select_compartments(&all, &["a".into()]), ["a", "b", "d"]);
        assert_eq!(
            select_compartments(&all, &["c".into(), "x".into()]),
            ["c", "x"]
        );
    }

    #[test]
    fn drain_reasons_are_bounded_and_safe() {
        let mut spec = OciMaintenanceEventSpec {
            event_id: "e".into(),
            instance_id: "i".into(),
            instance_name: None,
            compartment_id: "c".into(),
            policy: "p".into(),
            slurm_node: None,
            fault_ids: vec![],
            fault_summary: Some("HPCRDMA-0002-02: link down".into()),
            maintenance_category: "FLEXIBLE".into(),
            maintenance_reason: "HARDWARE_REPLACEMENT".into(),
            instance_action: "REBOOT_MIGRATION".into(),
            lifecycle_state: "SCHEDULED".into(),
            can_reschedule: true,
            time_window_start: None,
            time_hard_due_date: None,
            time_created: None,
        };
        assert_eq!(
            drain_reason(&spec),
            "OCI maintenance: HPCRDMA-0002-02: link down"
        );
        spec.fault_summary = None;
        assert!(drain_reason(&spec).ends_with("FLEXIBLE HARDWARE_REPLACEMENT"));
        // Whatever OCI says, the whole reason passes the agent's check.
        for summary in ["é".repeat(400), "a; rm -rf / `x` $(y) | z \"\n".repeat(20)] {
            spec.fault_summary = Some(summary);
            let full = format!("{}{}", crate::plan::REASON_PREFIX, drain_reason(&spec));
            assert!(crate::agent::validate::reason(&full).is_ok(), "{full}");
        }
    }
}

/// The policy reconciler runs discovery by itself when `spec.oci.enabled`.
#[cfg(test)]
mod wired {
    use std::sync::Arc;
    use std::time::Duration;

    use kube::api::ListParams;

    use super::tests::{KEY_PEM, policy, scenario};
    use crate::api::OciMaintenanceEvent;
    use crate::apiserver::ApiServer;
    use crate::controller::{self, Context, FixedConnector, Leadership, Pace};
    use crate::oci::emulator::Emulator;
    use crate::sim::{SimCluster, SimConfig};

    #[tokio::test]
    async fn the_policy_controller_mirrors_oci_events() {
        let key = crate::oci::config::parse_private_key(KEY_PEM, None).unwrap();
        let emu = Emulator::new(scenario(), vec![key.to_public_key()]);
        let (addr, _task) = emu.start("127.0.0.1:0").await.unwrap();
        let server = ApiServer::with_crds(&crate::api::crds());
        let kube = server.client();
        policy(&kube, &format!("http://{addr}")).await;
        let sim = SimCluster::new(SimConfig::default());
        let ctx = Context::new(
            kube.clone(),
            Arc::new(FixedConnector(Arc::new(sim))),
            controller::wall_clock(),
            Pace::default(),
            Leadership::always(),
            "test",
        );
        run_until_mirrored(ctx, &kube).await;
    }

    /// Runs the policy controller with `ctx` until the scenario's 8 events are mirrored.
    async fn run_until_mirrored(ctx: Context, kube: &kube::Client) {
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(controller::run(
            Arc::new(ctx),
            Some("default".into()),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ));
        let api: kube::Api<OciMaintenanceEvent> = kube::Api::namespaced(kube.clone(), "default");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let n = api.list(&ListParams::default()).await.unwrap().items.len();
            if n == 8 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} events mirrored"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop.send(true);
        let _ = task.await;
    }

    /// Workload identity and instance principals take their settings from the controller's
    /// environment: a pass with `auth: WorkloadIdentity` exchanges the ServiceAccount token
    /// at the emulator's proxymux (over TLS, verified with the cluster CA) and mirrors the
    /// events with the session token; `InstancePrincipal` federates the instance's identity.
    #[tokio::test]
    async fn session_credentials_come_from_the_controller_environment() {
        use std::collections::HashMap;

        use jiff::SignedDuration;
        use kube::api::{Patch, PatchParams};
        use serde_json::json;

        use crate::api::MaintenancePolicy;
        use crate::oci::emulator::{InstanceIdentity, TokenAuth};

        const SA: &str = "sa-token-of-the-controller";
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pki = tempfile::tempdir().unwrap();
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oci/make-identity.sh");
        let sc = scenario();
        let st = std::process::Command::new("sh")
            .arg(script)
            .arg(pki.path())
            .arg(&sc.tenancy)
            .status()
            .unwrap();
        assert!(st.success());
        let read = |f: &str| std::fs::read_to_string(pki.path().join(f)).unwrap();
        let emu = Emulator::with_tokens(
            sc,
            vec![],
            TokenAuth {
                sa_tokens: vec![SA.into()],
                instance: Some(InstanceIdentity {
                    cert_pem: read("leaf.pem"),
                    key_pem: read("leaf.key"),
                    intermediate_pem: read("intermediate.pem"),
                    trusted_ca_pem: read("ca.pem"),
                }),
                token_ttl: SignedDuration::from_mins(20),
            },
        )
        .unwrap();
        let (addr, _task) = emu.start("127.0.0.1:0").await.unwrap();
        let tls = crate::agent::tls::server_config(
            &pki.path().join("tls.pem"),
            &pki.path().join("tls.key"),
            None,
        )
        .unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_addr = l.local_addr().unwrap();
        tokio::spawn(crate::agent::tls::serve(
            l,
            tls,
            emu.router(),
            std::future::pending(),
        ));
        std::fs::write(pki.path().join("sa"), SA).unwrap();
        let vars: HashMap<&str, String> = HashMap::from([
            (
                "SLURM_MAINT_OCI_RPST_ENDPOINT",
                format!("https://{tls_addr}/resourcePrincipalSessionTokens"),
            ),
            (
                "SLURM_MAINT_OCI_SA_TOKEN_PATH",
                pki.path().join("sa").display().to_string(),
            ),
            (
                "OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH",
                pki.path().join("ca.pem").display().to_string(),
            ),
            ("OCI_METADATA_BASE_URL", format!("http://{addr}/opc/v2")),
            ("OCI_SDK_AUTH_CLIENT_REGION_URL", format!("http://{addr}")),
        ]);
        let env: controller::Env = Arc::new(move |k| vars.get(k).cloned());

        let server = ApiServer::with_crds(&crate::api::crds());
        let kube = server.client();
        policy(&kube, &format!("http://{addr}")).await;
        let policies: kube::Api<MaintenancePolicy> = kube::Api::namespaced(kube.clone(), "default");
        let pol = policies
            .patch(
                "compute",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"oci": {
                    "auth": "WorkloadIdentity", "credentialsSecretRef": null
                }}})),
            )
            .await
            .unwrap();
        let mut ctx = Context::new(
            kube.clone(),
            Arc::new(FixedConnector(Arc::new(SimCluster::new(
                SimConfig::default(),
            )))),
            controller::wall_clock(),
            Pace::default(),
            Leadership::always(),
            "test",
        );
        ctx.env = env.clone();
        run_until_mirrored(ctx, &kube).await;
        let state: serde_json::Value = reqwest::get(format!("http://{addr}/_emulator/state"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(state["tokensIssued"], 1, "{state}");

        // Instance principals, from the same environment.
        let mut ip = pol.clone();
        ip.spec.oci.auth = crate::api::policy::OciAuth::InstancePrincipal;
        let client = super::client_for_policy(&kube, &ip, env.as_ref())
            .await
            .unwrap();
        let compartments = client
            .list_compartments(&ip.spec.oci.tenancy_id.clone().unwrap())
            .await
            .unwrap();
        assert_eq!(compartments.len(), 3);
        // Without the settings, a clear error.
        let err = super::client_for_policy(&kube, &pol, &|_| None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("KUBERNETES_SERVICE_HOST"), "{err}");
    }
}
