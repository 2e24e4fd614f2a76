//! Objects, kinds, the resource-version counter, watch history and write semantics.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};

use serde_json::{Value, json};

use super::events;
use super::patch::{
    FieldSet, applied_fields, deep_merge, diff_paths, json_patch, merge_patch, remove_path,
};
use super::validate;

/// Watch events kept for resuming watches; older resource versions get 410 Expired.
pub(crate) const HISTORY_LIMIT: usize = 10_000;

/// The ConfigMap kube-controller-manager publishes in every namespace.
pub(crate) const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
const ROOT_CA_ANNOTATION: &str = "kubernetes.io/description";
const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
/// The CA published as `kube-root-ca.crt`: a self-signed certificate (its key was thrown
/// away). The embedded server speaks plain HTTP, so it signs nothing; it is there because
/// clients expect the ConfigMap in every namespace, as on a real cluster.
const EMBEDDED_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBnDCCAUGgAwIBAgIUWJelKpOmOEbCGj1vvYOXfZnAVikwCgYIKoZIzj0EAwIw
IjEgMB4GA1UEAwwXc2x1cm0tbWFpbnQtZW1iZWRkZWQtY2EwIBcNMjYxMjAzMDg1
MTQyWhgPMjEyNjExMDkwODUxNDJaMCIxIDAeBgNVBAMMF3NsdXJtLW1haW50LWVt
YmVkZGVkLWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeZbIxb70glZZuCKy
vo9whpCyBUTeM4mvKkFnfBzQ0ER4DwmyTZunkMsOfKCObp2weHsWjYE8sOGTlWnW
Nk3W1aNTMFEwHQYDVR0OBBYEFLGvxTzjVfCeJksKaUNFsDiaXJOQMB8GA1UdIwQY
MBaAFLGvxTzjVfCeJksKaUNFsDiaXJOQMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI
zj0EAwIDSQAwRgIhAMWd3hHzb1SlULtg6su5T5D/Fn0dNxY48sVL7p4C927wAiEA
hoITT359HC6hv/KSm8o2jfFSGpsEERQBqKk7UfoJ+d8=
-----END CERTIFICATE-----
";

/// One served group/version/resource.
#[derive(Clone, Debug)]
pub(crate) struct Kind {
    pub group: String,
    /// The group whose storage holds the objects: `events.k8s.io` Events are core Events.
    pub storage_group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub status: bool,
    pub generation: bool,
    pub unconditional_update: bool,
    pub schema: Option<Value>,
    pub printer_columns: Vec<Value>,
    pub crd: Option<String>,
}

impl Kind {
    fn builtin(group: &str, plural: &str, kind: &str, namespaced: bool, short: &[&str]) -> Self {
        Kind {
            group: group.into(),
            storage_group: if group == "events.k8s.io" {
                String::new()
            } else {
                group.into()
            },
            version: "v1".into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            list_kind: format!("{kind}List"),
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: vec![],
            namespaced,
            status: false,
            generation: false,
            unconditional_update: true,
            schema: None,
            printer_columns: vec![],
            crd: None,
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group`, as real error messages name a resource.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind.group`, as real validation messages name a kind (Events by their internal,
    /// core kind, whichever API was used).
    pub fn group_kind(&self) -> String {
        if self.storage_group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    fn is_crd(&self) -> bool {
        self.group == "apiextensions.k8s.io" && self.plural == "customresourcedefinitions"
    }

    pub fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.plural == "namespaces"
    }

    /// Core `v1` Events or `events.k8s.io/v1` Events: one store, two shapes.
    pub fn is_event(&self) -> bool {
        self.storage_group.is_empty() && self.plural == "events"
    }

    /// `events.k8s.io/v1` Events, kept in the store as core Events.
    fn is_new_event(&self) -> bool {
        self.is_event() && self.group == "events.k8s.io"
    }
}

/// A failed request, rendered as a `metav1.Status`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn not_found(kind: &Kind, name: &str) -> Self {
        ApiError {
            details: Some(json!({"name": name, "group": kind.group, "kind": kind.plural})),
            ..Self::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", kind.group_resource()),
            )
        }
    }

    fn already_exists(kind: &Kind, name: &str) -> Self {
        ApiError {
            details: Some(json!({"name": name, "group": kind.group, "kind": kind.plural})),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", kind.group_resource()),
            )
        }
    }

    fn conflict(kind: &Kind, name: &str, why: &str) -> Self {
        ApiError {
            details: Some(json!({"name": name, "group": kind.group, "kind": kind.plural})),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    kind.group_resource()
                ),
            )
        }
    }

    fn stale(kind: &Kind, name: &str) -> Self {
        Self::conflict(
            kind,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid from `(field, message-after-field, reason)` causes, with the message
    /// as `apierrors.NewInvalid` writes it: one error as is, several in brackets, each
    /// distinct `field: message` once; the causes keep every error.
    pub fn invalid(kind: &Kind, name: &str, causes: &[(String, String, &str)]) -> Self {
        let mut lines: Vec<String> = vec![];
        for (f, m, _) in causes {
            let line = if f.is_empty() {
                m.clone()
            } else {
                format!("{f}: {m}")
            };
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
        let joined = if lines.len() == 1 {
            lines[0].clone()
        } else {
            format!("[{}]", lines.join(", "))
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|(f, m, r)| json!({"reason": r, "message": m, "field": f}))
            .collect();
        ApiError {
            details: Some(
                json!({"name": name, "group": kind.storage_group, "kind": kind.kind, "causes": causes}),
            ),
            ..Self::new(
                422,
                "Invalid",
                format!("{} \"{name}\" is invalid: {joined}", kind.group_kind()),
            )
        }
    }

    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        if !self.reason.is_empty() {
            s["reason"] = self.reason.into();
        }
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

pub(crate) type Result<T> = std::result::Result<T, ApiError>;

/// Storage key: resources of all versions of a group share storage.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub group: String,
    pub plural: String,
    pub ns: String,
    pub name: String,
}

pub(crate) struct Event {
    pub rv: u64,
    pub key: Key,
    pub etype: &'static str,
    pub object: Value,
    pub prev: Option<Value>,
}

/// Label selector requirement.
#[derive(Debug, Clone)]
pub(crate) enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Field selector requirement: path, value, equal?
pub(crate) type FieldReq = (String, String, bool);

/// Which objects a list or watch sees.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub group: String,
    pub plural: String,
    pub ns: Option<String>,
    pub labels: Vec<LabelReq>,
    pub fields: Vec<FieldReq>,
}

impl Filter {
    pub fn matches(&self, key: &Key, obj: &Value) -> bool {
        if key.group != self.group || key.plural != self.plural {
            return false;
        }
        if self.ns.as_ref().is_some_and(|ns| *ns != key.ns) {
            return false;
        }
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|r| match r {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::Ne(k, v) => label(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
        });
        labels_ok
            && self.fields.iter().all(|(path, want, eq)| {
                let got = path
                    .split('.')
                    .try_fold(obj, |v, p| v.get(p))
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        v => v.to_string(),
                    })
                    .unwrap_or_default();
                (got == *want) == *eq
            })
    }
}

/// What a DELETE asks for.
#[derive(Debug, Default)]
pub(crate) struct DeleteOpts {
    pub orphan: bool,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

/// How a PATCH body applies; server-side apply names its field manager.
pub(crate) enum PatchKind {
    Merge,
    Apply { manager: String, force: bool },
    Json,
}

/// A parsed PATCH body.
pub(crate) struct PatchBody {
    pub how: PatchKind,
    pub body: Value,
}

pub(crate) struct State {
    pub rv: u64,
    /// `fieldValidation=Strict` for the request being served.
    pub strict: bool,
    pub compacted: u64,
    kinds: Vec<Kind>,
    objects: BTreeMap<Key, Value>,
    applied: BTreeMap<Key, BTreeMap<String, FieldSet>>,
    pub history: VecDeque<Event>,
    /// Resource version of the latest write per stored resource (group, plural): what a
    /// real server's watch cache for that resource has seen, and so the version its
    /// bookmarks carry.
    latest: BTreeMap<(String, String), u64>,
    notify: tokio::sync::watch::Sender<u64>,
}

impl State {
    pub fn new() -> Self {
        let mut st = State {
            rv: 0,
            strict: false,
            compacted: 0,
            kinds: vec![],
            objects: BTreeMap::new(),
            applied: BTreeMap::new(),
            history: VecDeque::new(),
            latest: BTreeMap::new(),
            notify: tokio::sync::watch::Sender::new(0),
        };
        let mut ns = Kind::builtin("", "namespaces", "Namespace", false, &["ns"]);
        ns.status = true;
        let mut crd = Kind::builtin(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
        );
        crd.status = true;
        crd.generation = true;
        crd.unconditional_update = false;
        for k in [
            ns,
            Kind::builtin("", "secrets", "Secret", true, &[]),
            Kind::builtin("", "configmaps", "ConfigMap", true, &["cm"]),
            Kind::builtin("", "events", "Event", true, &["ev"]),
            Kind::builtin("events.k8s.io", "events", "Event", true, &["ev"]),
            Kind::builtin("coordination.k8s.io", "leases", "Lease", true, &[]),
            crd,
        ] {
            st.kinds.push(k);
        }
        let ns = st.find_kind("", "v1", "namespaces").expect("built in");
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            st.create(&ns, None, json!({"metadata": {"name": name}}), false)
                .expect("fresh namespace");
        }
        st
    }

    /// The resource version of the latest write to `kind`'s objects (0 if none yet).
    pub fn latest_rv(&self, kind: &Kind) -> u64 {
        self.latest
            .get(&(kind.storage_group.clone(), kind.plural.clone()))
            .copied()
            .unwrap_or_default()
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.subscribe()
    }

    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    pub fn find_kind(&self, group: &str, version: &str, plural: &str) -> Option<Kind> {
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
            .cloned()
    }

    fn key(kind: &Kind, ns: Option<&str>, name: &str) -> Key {
        Key {
            group: kind.storage_group.clone(),
            plural: kind.plural.clone(),
            ns: if kind.namespaced {
                ns.unwrap_or_default().to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    fn push(
        &mut self,
        key: Key,
        etype: &'static str,
        mut obj: Value,
        prev: Option<Value>,
    ) -> Value {
        self.rv += 1;
        self.latest
            .insert((key.group.clone(), key.plural.clone()), self.rv);
        obj["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        if etype == "DELETED" {
            self.objects.remove(&key);
            self.applied.remove(&key);
        } else {
            self.objects.insert(key.clone(), obj.clone());
        }
        self.history.push_back(Event {
            rv: self.rv,
            key,
            etype,
            object: obj.clone(),
            prev,
        });
        while self.history.len() > HISTORY_LIMIT {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
        self.notify.send_replace(self.rv);
        obj
    }

    /// The object as stored: `events.k8s.io` Events become core Events, and core Events
    /// get the fields a real server always writes.
    fn to_storage(kind: &Kind, obj: Value) -> Value {
        if kind.is_new_event() {
            events::to_core(obj)
        } else if kind.is_event() {
            events::normalize_core(obj)
        } else {
            obj
        }
    }

    /// The object as served under `kind`'s version.
    pub fn present(kind: &Kind, mut obj: Value) -> Value {
        if kind.is_new_event() {
            obj = events::to_events_v1(obj);
        }
        obj["apiVersion"] = Value::String(kind.api_version());
        obj["kind"] = Value::String(kind.kind.clone());
        obj
    }

    pub fn get(&self, kind: &Kind, ns: Option<&str>, name: &str) -> Result<Value> {
        self.objects
            .get(&Self::key(kind, ns, name))
            .map(|o| Self::present(kind, o.clone()))
            .ok_or_else(|| ApiError::not_found(kind, name))
    }

    /// Matching objects in key order after `after`, at most `limit`; also how many remain.
    pub fn list(
        &self,
        kind: &Kind,
        filter: &Filter,
        after: Option<&(String, String)>,
        limit: Option<usize>,
    ) -> (Vec<Value>, usize, Option<(String, String)>) {
        let mut items = vec![];
        let mut remaining = 0;
        let mut last = None;
        for (k, o) in &self.objects {
            if !filter.matches(k, o) {
                continue;
            }
            if after.is_some_and(|(ns, n)| (&k.ns, &k.name) <= (ns, n)) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                remaining += 1;
                continue;
            }
            last = Some((k.ns.clone(), k.name.clone()));
            items.push(Self::present(kind, o.clone()));
        }
        (items, remaining, if remaining > 0 { last } else { None })
    }

    fn namespace_ready(&self, ns: &str) -> Result<()> {
        let key = Key {
            group: String::new(),
            plural: "namespaces".into(),
            ns: String::new(),
            name: ns.into(),
        };
        match self.objects.get(&key) {
            None => Err(ApiError {
                details: Some(json!({"name": ns, "kind": "namespaces"})),
                ..ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
            }),
            Some(o) if o.pointer("/metadata/deletionTimestamp").is_some() => Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    fn check_type_meta(kind: &Kind, obj: &mut Value, required: bool) -> Result<()> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not a JSON object",
            ));
        }
        for (field, want) in [
            ("apiVersion", kind.api_version()),
            ("kind", kind.kind.clone()),
        ] {
            match obj.get(field).and_then(Value::as_str) {
                None | Some("") if required && field == "kind" => {
                    return Err(ApiError::new(
                        500,
                        "",
                        format!(
                            "failed to create typed patch object: no corresponding type for {}, Kind=",
                            kind.api_version()
                        ),
                    ));
                }
                None | Some("") if required => {
                    return Err(ApiError::bad_request(format!(
                        "Incorrect version specified in apply patch. Specified patch version: , expected: {}",
                        kind.api_version()
                    )));
                }
                None | Some("") => obj[field] = Value::String(want),
                Some(got) if got != want && !(field == "apiVersion" && same_group(got, kind)) => {
                    return Err(ApiError::bad_request(format!(
                        "the API version in the data ({}) does not match the expected API version ({})",
                        obj["apiVersion"].as_str().unwrap_or_default(),
                        kind.api_version()
                    )));
                }
                Some(_) => obj[field] = Value::String(want),
            }
        }
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        Ok(())
    }

    fn check_ns_and_name(kind: &Kind, obj: &Value, ns: Option<&str>, name: &str) -> Result<()> {
        if let Some(n) = obj.pointer("/metadata/name").and_then(Value::as_str)
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        if kind.namespaced
            && let Some(n) = obj.pointer("/metadata/namespace").and_then(Value::as_str)
            && !n.is_empty()
            && Some(n) != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        Ok(())
    }

    pub fn create(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value> {
        Self::check_type_meta(kind, &mut obj, false)?;
        let mut obj = Self::to_storage(kind, obj);
        let meta = obj["metadata"].as_object_mut().expect("checked");
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::new(
                500,
                "",
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if kind.namespaced {
            let ns = ns.unwrap_or_default();
            match meta.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {}
            }
            meta.insert("namespace".into(), ns.into());
        } else {
            meta.remove("namespace");
        }
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            let Some(prefix) = meta.get("generateName").and_then(Value::as_str) else {
                return Err(ApiError::invalid(
                    kind,
                    "",
                    &[(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                        "FieldValueRequired",
                    )],
                ));
            };
            name = loop {
                let candidate = format!("{prefix}{}", random_suffix(5));
                if !self.objects.contains_key(&Self::key(kind, ns, &candidate)) {
                    break candidate;
                }
            };
            meta.insert("name".into(), name.clone().into());
        }
        let now = now();
        meta.insert("uid".into(), new_uid().into());
        meta.insert("creationTimestamp".into(), now.into());
        for f in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "resourceVersion",
            "generation",
            "selfLink",
        ] {
            meta.remove(f);
        }
        if kind.generation {
            meta.insert("generation".into(), 1.into());
        }
        if kind.namespaced {
            self.namespace_ready(ns.unwrap_or_default())?;
        }
        if kind.status
            && let Some(o) = obj.as_object_mut()
        {
            o.remove("status");
        }
        if kind.is_namespace() {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name.clone().into();
        }
        let mut causes = validate::name_causes(kind, &name);
        causes.extend(validate::metadata_causes(&obj));
        if kind.is_event() {
            causes.extend(events::validate(&obj, kind.is_new_event(), None));
        }
        if kind.is_crd() {
            causes.extend(validate::crd_causes(&name, &obj));
        }
        validate::admit(kind, &name, &mut obj, None, self.strict, causes)?;
        let key = Self::key(kind, ns, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(kind, &name));
        }
        if dry_run {
            return Ok(Self::present(kind, obj));
        }
        let stored = self.push(key.clone(), "ADDED", obj, None);
        if kind.is_crd() {
            return Ok(self.establish_crd(&key, &stored));
        }
        if kind.is_namespace() {
            self.publish_root_ca(&name);
        }
        Ok(Self::present(kind, stored))
    }

    /// Registers the CRD's kinds and marks it Established, as the real CRD controllers do.
    fn establish_crd(&mut self, key: &Key, crd: &Value) -> Value {
        let name = key.name.clone();
        self.kinds.retain(|k| k.crd.as_deref() != Some(&name));
        let spec = &crd["spec"];
        let names = &spec["names"];
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let strings = |v: &Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut stored = vec![];
        for v in spec["versions"].as_array().into_iter().flatten() {
            if v["storage"].as_bool() == Some(true) {
                stored.push(v["name"].clone());
            }
            if v["served"].as_bool() == Some(false) {
                continue;
            }
            let kind = s(&names["kind"]);
            self.kinds.push(Kind {
                group: s(&spec["group"]),
                storage_group: s(&spec["group"]),
                version: s(&v["name"]),
                plural: s(&names["plural"]),
                singular: names["singular"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| kind.to_lowercase()),
                list_kind: names["listKind"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| format!("{kind}List")),
                kind,
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                namespaced: spec["scope"].as_str() == Some("Namespaced"),
                status: v.pointer("/subresources/status").is_some(),
                generation: true,
                unconditional_update: false,
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                printer_columns: v["additionalPrinterColumns"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                crd: Some(name.clone()),
            });
        }
        let now = now();
        let cond = |t: &str, reason: &str, message: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
        let mut accepted = names.clone();
        if accepted.get("listKind").is_none() {
            accepted["listKind"] = format!("{}List", s(&names["kind"])).into();
        }
        if accepted.get("singular").is_none() {
            accepted["singular"] = s(&names["kind"]).to_lowercase().into();
        }
        let status = json!({
            "conditions": [
                cond("NamesAccepted", "NoConflicts", "no conflicts found"),
                cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "acceptedNames": accepted,
            "storedVersions": stored,
        });
        if crd.get("status") == Some(&status) {
            return crd.clone();
        }
        let mut next = crd.clone();
        if crd.pointer("/status/conditions").is_some() {
            next["status"]["acceptedNames"] = status["acceptedNames"].clone();
            next["status"]["storedVersions"] = status["storedVersions"].clone();
        } else {
            next["status"] = status;
        }
        if next == *crd {
            return next;
        }
        self.push(key.clone(), "MODIFIED", next, Some(crd.clone()))
    }

    fn old_for_write(&self, kind: &Kind, ns: Option<&str>, name: &str) -> Result<(Key, Value)> {
        let key = Self::key(kind, ns, name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind, name))?;
        Ok((key, old))
    }

    pub fn update(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Value> {
        let out = self.update_inner(kind, ns, name, obj, status_only, dry_run)?;
        self.after_write(kind, ns, name);
        Ok(out)
    }

    pub fn patch(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        name: &str,
        patch: PatchBody,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Value> {
        let out = self.patch_inner(kind, ns, name, patch, status_only, dry_run)?;
        self.after_write(kind, ns, name);
        Ok(out)
    }

    /// What kube-controller-manager's controllers do after a write: the
    /// root-ca-cert-publisher puts back a `kube-root-ca.crt` that was changed or deleted.
    fn after_write(&mut self, kind: &Kind, ns: Option<&str>, name: &str) {
        if kind.group.is_empty() && kind.plural == "configmaps" && name == ROOT_CA_CONFIGMAP {
            self.publish_root_ca(ns.unwrap_or_default());
        }
    }

    /// Creates or repairs the namespace's `kube-root-ca.crt` ConfigMap (key `ca.crt`, and
    /// the description annotation), as the root-ca-cert-publisher does for every
    /// namespace that is not terminating.
    fn publish_root_ca(&mut self, ns: &str) {
        if self.namespace_ready(ns).is_err() {
            return;
        }
        let Some(kind) = self.find_kind("", "v1", "configmaps") else {
            return;
        };
        let key = Self::key(&kind, Some(ns), ROOT_CA_CONFIGMAP);
        let data = json!({"ca.crt": EMBEDDED_CA});
        match self.objects.get(&key).cloned() {
            None => {
                let cm = json!({
                    "metadata": {"name": ROOT_CA_CONFIGMAP,
                                 "annotations": {ROOT_CA_ANNOTATION: ROOT_CA_DESCRIPTION}},
                    "data": data,
                });
                let _ = self.create(&kind, Some(ns), cm, false);
            }
            Some(cm) => {
                let described = cm
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(ROOT_CA_ANNOTATION))
                    .and_then(Value::as_str)
                    .is_some_and(|d| !d.is_empty());
                if cm.get("data") == Some(&data) && described {
                    return;
                }
                let mut next = cm.clone();
                next["data"] = data;
                if !next["metadata"]["annotations"].is_object() {
                    next["metadata"]["annotations"] = json!({});
                }
                next["metadata"]["annotations"][ROOT_CA_ANNOTATION] = ROOT_CA_DESCRIPTION.into();
                next.as_object_mut().map(|o| o.remove("binaryData"));
                self.push(key, "MODIFIED", next, Some(cm));
            }
        }
    }

    fn update_inner(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Value> {
        Self::check_type_meta(kind, &mut obj, false)?;
        Self::check_ns_and_name(kind, &obj, ns, name)?;
        let obj = Self::to_storage(kind, obj);
        let (key, old) = self.old_for_write(kind, ns, name)?;
        match obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            Some(rv)
                if !rv.is_empty() && Some(rv) != old["metadata"]["resourceVersion"].as_str() =>
            {
                return Err(ApiError::stale(kind, name));
            }
            Some(rv) if !rv.is_empty() => {}
            _ if !kind.unconditional_update => {
                let cause = "Invalid value: 0x0: must be specified for an update";
                return Err(ApiError {
                    details: Some(
                        json!({"name": name, "group": kind.group, "kind": kind.plural,
                        "causes": [{"reason": "FieldValueInvalid", "message": cause,
                                    "field": "metadata.resourceVersion"}]}),
                    ),
                    ..ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "{} \"{name}\" is invalid: metadata.resourceVersion: {cause}",
                            kind.group_resource()
                        ),
                    )
                });
            }
            _ => {}
        }
        let new = Self::prepare_update(kind, name, &old, obj, status_only)?;
        self.finish_write(kind, key, old, new, dry_run)
    }

    fn patch_inner(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        name: &str,
        patch: PatchBody,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Value> {
        let PatchBody { how, body: patch } = patch;
        let strict_patch = self.strict && !matches!(how, PatchKind::Apply { .. });
        let applied = match &how {
            PatchKind::Apply { manager, .. } => Some((
                format!("{manager}{}", if status_only { "/status" } else { "" }),
                applied_fields(kind, &patch, status_only),
            )),
            _ => None,
        };
        if let PatchKind::Apply { .. } = how {
            let mut p = patch.clone();
            Self::check_type_meta(kind, &mut p, true)?;
            Self::check_ns_and_name(kind, &p, ns, name)?;
        }
        let (key, old) = match self.old_for_write(kind, ns, name) {
            Ok(found) => found,
            Err(e) => {
                if let (Some((manager, fields)), false) = (applied, status_only) {
                    let mut obj = json!({});
                    deep_merge(&mut obj, &patch);
                    let created = self.create(kind, ns, obj, dry_run)?;
                    if !dry_run {
                        let key = Self::key(kind, ns, name);
                        self.applied.entry(key).or_default().insert(manager, fields);
                    }
                    return Ok(created);
                }
                return Err(e);
            }
        };
        if let Some(rv) = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && !rv.is_empty()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::stale(kind, name));
        }
        let mut patched = if kind.is_new_event() {
            Self::present(kind, old.clone())
        } else {
            old.clone()
        };
        match how {
            PatchKind::Merge => merge_patch(&mut patched, &patch),
            PatchKind::Apply { force, .. } => {
                if let Some((manager, fields)) = &applied {
                    if !force {
                        self.check_conflicts(kind, &key, manager, fields, &old, &patch)?;
                    }
                    deep_merge(&mut patched, &patch);
                    self.drop_unapplied(&key, manager, fields, &mut patched);
                }
            }
            PatchKind::Json => {
                patched =
                    json_patch(patched, &patch).map_err(|e| ApiError::new(422, "Invalid", e))?;
            }
        }
        Self::check_type_meta(kind, &mut patched, false)?;
        Self::check_ns_and_name(kind, &patched, ns, name)?;
        let patched = Self::to_storage(kind, patched);
        let new = Self::prepare_update(kind, name, &old, patched, status_only)?;
        let patched = strict_patch.then(|| Self::present(kind, new.clone()));
        let written = self
            .finish_write(kind, key.clone(), old, new, dry_run)
            .map_err(|e| match &patched {
                Some(p) => strict_patch_error(p, e),
                None => e,
            })?;
        if let Some((manager, fields)) = applied
            && !dry_run
            && self.objects.contains_key(&key)
        {
            self.applied.entry(key).or_default().insert(manager, fields);
        }
        Ok(written)
    }

    /// 409 when a non-forced apply changes a field another apply manager owns.
    fn check_conflicts(
        &self,
        kind: &Kind,
        key: &Key,
        manager: &str,
        fields: &FieldSet,
        old: &Value,
        patch: &Value,
    ) -> Result<()> {
        let Some(managers) = self.applied.get(key) else {
            return Ok(());
        };
        let at = |v: &Value, p: &[String]| p.iter().try_fold(v, |v, k| v.get(k)).cloned();
        let mut conflicts = vec![];
        for (other, owned) in managers.iter().filter(|(m, _)| *m != manager) {
            for p in fields.intersection(owned) {
                if at(old, p) != at(patch, p) {
                    let who = other.trim_end_matches("/status");
                    conflicts.push((
                        format!(".{}", p.join(".")),
                        format!("conflict with \"{who}\""),
                    ));
                }
            }
        }
        if conflicts.is_empty() {
            return Ok(());
        }
        let n = conflicts.len();
        let list: Vec<String> = conflicts.iter().map(|(f, m)| format!("{m}: {f}")).collect();
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(f, m)| json!({"reason": "FieldManagerConflict", "message": m, "field": f}))
            .collect();
        Err(ApiError {
            details: Some(
                json!({"name": key.name, "group": kind.group, "kind": kind.plural,
                                 "causes": causes}),
            ),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Apply failed with {n} conflict{}: {}",
                    if n == 1 { "" } else { "s" },
                    list.join(", ")
                ),
            )
        })
    }

    /// Removes fields `manager` applied before but no longer applies, unless another
    /// apply manager still applies them.
    fn drop_unapplied(&self, key: &Key, manager: &str, fields: &FieldSet, obj: &mut Value) {
        let Some(managers) = self.applied.get(key) else {
            return;
        };
        let Some(before) = managers.get(manager) else {
            return;
        };
        let kept: FieldSet = managers
            .iter()
            .filter(|(m, _)| *m != manager)
            .flat_map(|(_, f)| f.iter().cloned())
            .chain(fields.iter().cloned())
            .collect();
        for path in before.difference(&kept) {
            remove_path(obj, path);
        }
    }

    fn prepare_update(
        kind: &Kind,
        name: &str,
        old: &Value,
        mut new: Value,
        status_only: bool,
    ) -> Result<Value> {
        if status_only {
            let mut out = old.clone();
            match new.get("status") {
                Some(s) => out["status"] = s.clone(),
                None => {
                    out.as_object_mut().map(|o| o.remove("status"));
                }
            }
            return Ok(out);
        }
        let meta = new["metadata"].as_object_mut().expect("checked");
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "name",
            "namespace",
        ] {
            match old["metadata"].get(f) {
                Some(v) => meta.insert(f.into(), v.clone()),
                None => meta.remove(f),
            };
        }
        meta.remove("managedFields");
        meta.remove("selfLink");
        if kind.status || kind.is_namespace() {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    new.as_object_mut().map(|o| o.remove("status"));
                }
            }
        }
        if kind.is_namespace() {
            new["spec"] = old["spec"].clone();
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            let had = finalizers(old);
            if finalizers(&new).iter().any(|f| !had.contains(f)) {
                return Err(ApiError::invalid(
                    kind,
                    name,
                    &[(
                        "metadata.finalizers".into(),
                        "Forbidden: no new finalizers can be added if the object is being deleted"
                            .into(),
                        "FieldValueForbidden",
                    )],
                ));
            }
        }
        if kind.generation {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(o) = v.as_object_mut() {
                    o.remove("metadata");
                    o.remove("apiVersion");
                    o.remove("kind");
                    if kind.status {
                        o.remove("status");
                    }
                }
                v
            };
            if strip(old) != strip(&new) {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                new["metadata"]["generation"] = g.into();
            }
        }
        Ok(new)
    }

    fn finish_write(
        &mut self,
        kind: &Kind,
        key: Key,
        old: Value,
        mut new: Value,
        dry_run: bool,
    ) -> Result<Value> {
        let mut causes = validate::metadata_causes(&new);
        if kind.is_event() {
            causes.extend(events::validate(&new, kind.is_new_event(), Some(&old)));
        }
        if kind.is_crd() {
            causes.extend(validate::crd_causes(&key.name, &new));
        }
        validate::admit(kind, &key.name, &mut new, Some(&old), self.strict, causes)?;
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        new["apiVersion"] = old["apiVersion"].clone();
        if new == old || dry_run {
            return Ok(Self::present(kind, new));
        }
        if let Some(managers) = self.applied.get_mut(&key) {
            let mut changed = FieldSet::new();
            diff_paths(&old, &new, &mut vec![], &mut changed);
            for fields in managers.values_mut() {
                fields.retain(|p| !changed.iter().any(|c| c.starts_with(p) || p.starts_with(c)));
            }
        }
        let stored = self.push(key.clone(), "MODIFIED", new, Some(old));
        if stored.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&stored).is_empty()
        {
            let gone = self.remove(&key, false);
            return Ok(Self::present(kind, gone.unwrap_or(stored)));
        }
        if kind.is_crd() {
            return Ok(self.establish_crd(&key, &stored));
        }
        Ok(Self::present(kind, stored))
    }

    /// DELETE: with finalizers, marks the object; otherwise removes it and collects dependents.
    /// Returns the object and whether it is gone.
    pub fn delete(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<(Value, bool)> {
        let out = self.delete_inner(kind, ns, name, opts)?;
        self.after_write(kind, ns, name);
        Ok(out)
    }

    fn delete_inner(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<(Value, bool)> {
        let (key, old) = self.old_for_write(kind, ns, name)?;
        let meta = &old["metadata"];
        if let Some(uid) = &opts.uid
            && meta["uid"].as_str() != Some(uid)
        {
            return Err(ApiError::conflict(
                kind,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta["uid"].as_str().unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && meta["resourceVersion"].as_str() != Some(rv)
        {
            return Err(ApiError::conflict(
                kind,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta["resourceVersion"].as_str().unwrap_or_default()
                ),
            ));
        }
        let mut marked = old.clone();
        if meta.get("deletionTimestamp").is_none() {
            marked["metadata"]["deletionTimestamp"] = now().into();
            marked["metadata"]["deletionGracePeriodSeconds"] = 0.into();
        }
        if kind.is_namespace() {
            marked["status"]["phase"] = "Terminating".into();
        }
        if opts.dry_run {
            return Ok((Self::present(kind, marked), false));
        }
        if kind.is_namespace() {
            let inside: Vec<Key> = self
                .objects
                .keys()
                .filter(|k| k.ns == name)
                .cloned()
                .collect();
            for k in inside {
                self.remove(&k, false);
            }
            self.remove(&key, false);
            return Ok((Self::present(kind, marked), true));
        }
        if !finalizers(&old).is_empty() {
            if meta.get("deletionTimestamp").is_some() {
                return Ok((Self::present(kind, old), false));
            }
            let stored = self.push(key, "MODIFIED", marked, Some(old));
            return Ok((Self::present(kind, stored), false));
        }
        let gone = self.remove(&key, opts.orphan).unwrap_or(old);
        Ok((Self::present(kind, gone), true))
    }

    /// Removes the object now and garbage-collects its dependents.
    fn remove(&mut self, key: &Key, orphan: bool) -> Option<Value> {
        let obj = self.objects.get(key).cloned()?;
        let gone = self.push(key.clone(), "DELETED", obj.clone(), Some(obj));
        if key.group == "apiextensions.k8s.io" && key.plural == "customresourcedefinitions" {
            let served: Vec<Kind> = self
                .kinds
                .iter()
                .filter(|k| k.crd.as_deref() == Some(&key.name))
                .cloned()
                .collect();
            self.kinds.retain(|k| k.crd.as_deref() != Some(&key.name));
            if let Some(k) = served.first() {
                let doomed: Vec<Key> = self
                    .objects
                    .keys()
                    .filter(|o| o.group == k.group && o.plural == k.plural)
                    .cloned()
                    .collect();
                for d in doomed {
                    self.remove(&d, false);
                }
            }
        }
        if let Some(uid) = gone.pointer("/metadata/uid").and_then(Value::as_str) {
            self.collect_dependents(uid, &key.ns, orphan);
        }
        Some(gone)
    }

    fn collect_dependents(&mut self, uid: &str, owner_ns: &str, orphan: bool) {
        let live: HashSet<String> = self
            .objects
            .values()
            .filter_map(|o| o.pointer("/metadata/uid").and_then(Value::as_str))
            .map(String::from)
            .collect();
        let dependents: Vec<(Key, Value)> = self
            .objects
            .iter()
            .filter(|(k, o)| {
                (owner_ns.is_empty() || k.ns == owner_ns) && owner_uids(o).iter().any(|u| u == uid)
            })
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        for (key, obj) in dependents {
            let others_live = owner_uids(&obj)
                .iter()
                .any(|u| u != uid && live.contains(u));
            if orphan || others_live {
                let mut next = obj.clone();
                if let Some(refs) = next["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"].as_str() != Some(uid));
                }
                self.push(key, "MODIFIED", next, Some(obj));
            } else if !finalizers(&obj).is_empty() {
                if obj.pointer("/metadata/deletionTimestamp").is_none() {
                    let mut next = obj.clone();
                    next["metadata"]["deletionTimestamp"] = now().into();
                    next["metadata"]["deletionGracePeriodSeconds"] = 0.into();
                    self.push(key, "MODIFIED", next, Some(obj));
                }
            } else {
                self.remove(&key, false);
            }
        }
    }

    /// Watch events after `cursor` as seen through `filter`, and the new cursor;
    /// `Err(oldest)` when `cursor` has been compacted away.
    pub fn events_since(
        &self,
        kind: &Kind,
        cursor: u64,
        filter: &Filter,
    ) -> std::result::Result<(Vec<Value>, u64), u64> {
        if cursor < self.compacted {
            return Err(self.compacted + 1);
        }
        let start = self.history.partition_point(|e| e.rv <= cursor);
        let mut out = vec![];
        for e in self.history.range(start..) {
            let now = filter.matches(&e.key, &e.object);
            let before = e.prev.as_ref().is_some_and(|p| filter.matches(&e.key, p));
            let etype = match (e.etype, before, now) {
                ("ADDED", _, true) => "ADDED",
                ("DELETED", _, true) => "DELETED",
                ("MODIFIED", true, true) => "MODIFIED",
                ("MODIFIED", false, true) => "ADDED",
                ("MODIFIED", true, false) => "DELETED",
                _ => continue,
            };
            out.push(json!({"type": etype, "object": Self::present(kind, e.object.clone())}));
        }
        Ok((out, self.rv))
    }

    /// Synthetic ADDED events for everything `filter` sees now.
    pub fn snapshot(&self, kind: &Kind, filter: &Filter) -> (Vec<Value>, u64) {
        let events = self
            .objects
            .iter()
            .filter(|(k, o)| filter.matches(k, o))
            .map(|(_, o)| json!({"type": "ADDED", "object": Self::present(kind, o.clone())}))
            .collect();
        (events, self.rv)
    }

    /// Keys of everything a collection DELETE would remove.
    pub fn matching_names(&self, filter: &Filter) -> Vec<(String, String)> {
        self.objects
            .iter()
            .filter(|(k, o)| filter.matches(k, o))
            .map(|(k, _)| (k.ns.clone(), k.name.clone()))
            .collect()
    }
}

/// A merge or JSON patch refused by `fieldValidation=Strict`: 1.34 reports it as a 422 on
/// the field `patch`, quoting the patched object (keys sorted, as Go marshals a map).
fn strict_patch_error(patched: &Value, e: ApiError) -> ApiError {
    const MARK: &str = "strict decoding error: ";
    let Some(at) = e.message.find(MARK).filter(|_| e.code == 400) else {
        return e;
    };
    let body = format!(
        "Invalid value: {:?}: {}",
        patched.to_string(),
        &e.message[at..]
    );
    ApiError {
        details: Some(json!({"causes": [
            {"reason": "FieldValueInvalid", "message": body, "field": "patch"}
        ]})),
        ..ApiError::new(422, "Invalid", format!(" \"\" is invalid: patch: {body}"))
    }
}

fn same_group(api_version: &str, kind: &Kind) -> bool {
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    group == kind.group
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r["uid"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub(crate) fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// Lowercase consonants and digits, as Kubernetes' generateName uses.
pub(crate) fn random_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = random_u64();
    (0..n)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

fn new_uid() -> String {
    let (a, b) = (random_u64(), random_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}
