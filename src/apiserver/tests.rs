use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, Status};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};

use super::harness::TestCluster;
use super::*;
use crate::api::{MaintenancePolicy, NodeMaintenance};

type StorePredicate = Box<dyn Fn(&reflector::Store<ConfigMap>) -> bool + Send>;

fn server() -> ApiServer {
    ApiServer::with_crds(&crate::api::crds())
}

fn api_err<T: std::fmt::Debug>(r: kube::Result<T>) -> Status {
    match r {
        Err(kube::Error::Api(e)) => *e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"},
    }))
    .unwrap()
}

/// A fresh namespace on the embedded server, or on a real one when
/// `SLURM_MAINT_E2E_KUBECONFIG` is set (so these tests also check the server's fidelity).
async fn cluster(hint: &str) -> TestCluster {
    TestCluster::start(hint).await
}

fn ns_api<K>(c: &TestCluster) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(c.client.clone(), &c.namespace)
}

fn dyn_api<K: kube::Resource<DynamicType = ()>>(c: &TestCluster) -> Api<DynamicObject> {
    Api::namespaced_with(
        c.client.clone(),
        &c.namespace,
        &ApiResource::erase::<K>(&()),
    )
}

/// Whether the server is 1.25 or newer: evaluates CEL `x-kubernetes-validations` and
/// honours `fieldValidation`.
async fn modern(c: &TestCluster) -> bool {
    let v = c.client.apiserver_version().await.unwrap();
    v.minor.trim_end_matches('+').parse::<u32>().unwrap_or(0) >= 25
}

/// The server's minor version (1.x).
async fn minor(c: &TestCluster) -> u32 {
    let v = c.client.apiserver_version().await.unwrap();
    v.minor.trim_end_matches('+').parse::<u32>().unwrap_or(0)
}

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

fn policy(name: &str, budget: Value) -> DynamicObject {
    obj(json!({
        "apiVersion": "slurm-maint.io/v1alpha1",
        "kind": "MaintenancePolicy",
        "metadata": {"name": name},
        "spec": {
            "partition": "batch",
            "agent": {"url": "http://agent:8080", "tokenSecretRef": {"name": "agent-token"}},
            "budget": budget,
        },
    }))
}

fn node_maintenance(name: &str, node: &str) -> DynamicObject {
    obj(json!({
        "apiVersion": "slurm-maint.io/v1alpha1",
        "kind": "NodeMaintenance",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "policy": "p", "action": "Reboot",
                 "requestedAt": "2026-01-01T00:00:00Z"},
    }))
}

/// Waits (up to 30s, for a real cluster's garbage collector) until `name` is gone.
async fn eventually_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..300 {
        match api.get(name).await {
            Err(kube::Error::Api(e)) if e.code == 404 => return,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("{name} was never deleted");
}

fn merge(v: Value) -> Patch<Value> {
    Patch::Merge(v)
}

#[tokio::test]
async fn crud_not_found_and_already_exists() {
    let c = cluster("crud").await;
    let api: Api<ConfigMap> = ns_api(&c);
    let created = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.namespace.as_deref(), Some(c.namespace.as_str()));
    assert!(meta.generation.is_none());
    let e = api_err(
        api.create(&PostParams::default(), &cm("a", json!({})))
            .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    let e = api_err(api.get("missing").await);
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    assert_eq!(e.message, "configmaps \"missing\" not found");

    let mut got = api.get("a").await.unwrap();
    got.data = Some([("k".to_string(), "w".to_string())].into());
    let replaced = api
        .replace("a", &PostParams::default(), &got)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        got.metadata.resource_version
    );
    assert_eq!(replaced.data.unwrap()["k"], "w");

    let generated = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap(),
        )
        .await
        .unwrap();
    let name = generated.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_err(api.get("a").await).code, 404);
    assert_eq!(
        api_err(api.delete("a", &DeleteParams::default()).await).code,
        404
    );

    let e = api_err(
        api.create(&PostParams::default(), &cm("Bad_Name", json!({})))
            .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    for labels in [json!({"ok": "not ok!"}), json!({"bad key": "v"})] {
        let e = api_err(
            api.create(&PostParams::default(), &cm("labelled", labels))
                .await,
        );
        assert_eq!(e.code, 422, "{}", e.message);
    }
    let mut finalized = cm("finalized", json!({}));
    finalized.metadata.finalizers = Some(vec!["not a finalizer".into()]);
    let e = api_err(api.create(&PostParams::default(), &finalized).await);
    assert_eq!(e.code, 422, "{}", e.message);
    let elsewhere: Api<ConfigMap> = Api::namespaced(c.client.clone(), "nowhere");
    let e = api_err(
        elsewhere
            .create(&PostParams::default(), &cm("a", json!({})))
            .await,
    );
    assert_eq!(e.message, "namespaces \"nowhere\" not found");
    c.cleanup().await;
}

#[tokio::test]
async fn lease_replace_with_stale_resource_version_conflicts() {
    let c = cluster("lease").await;
    let api: Api<Lease> = ns_api(&c);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    }))
    .unwrap();
    let first = api.create(&PostParams::default(), &lease).await.unwrap();
    let mut mine = first.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let second = api
        .replace("leader", &PostParams::default(), &mine)
        .await
        .unwrap();
    assert_eq!(second.spec.unwrap().holder_identity.as_deref(), Some("b"));
    let mut stale = first;
    stale.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let e = api_err(api.replace("leader", &PostParams::default(), &stale).await);
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains("the object has been modified"),
        "{}",
        e.message
    );
    let e = api_err(
        api.patch(
            "leader",
            &PatchParams::default(),
            &merge(json!({"metadata": {"resourceVersion": "1"}, "spec": {"holderIdentity": "d"}})),
        )
        .await,
    );
    assert_eq!(e.code, 409);
    c.cleanup().await;
}

#[tokio::test]
async fn generation_bumps_only_on_spec_change() {
    let c = cluster("generation").await;
    let api = dyn_api::<NodeMaintenance>(&c);
    let nm = api
        .create(&PostParams::default(), &node_maintenance("n1", "node-1"))
        .await
        .unwrap();
    assert_eq!(nm.metadata.generation, Some(1));
    let pp = PatchParams::default();
    let nm = api
        .patch(
            "n1",
            &pp,
            &merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(nm.metadata.generation, Some(1));
    let nm = api
        .patch("n1", &pp, &merge(json!({"spec": {"reason": "kernel"}})))
        .await
        .unwrap();
    assert_eq!(nm.metadata.generation, Some(2));
    let nm = api
        .patch_status("n1", &pp, &merge(json!({"status": {"phase": "Pending"}})))
        .await
        .unwrap();
    assert_eq!(nm.metadata.generation, Some(2));
    let before = nm.metadata.resource_version.clone();
    let same = api
        .patch("n1", &pp, &merge(json!({"spec": {"reason": "kernel"}})))
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version, before,
        "no-op writes are not writes"
    );
    c.cleanup().await;
}

#[tokio::test]
async fn status_subresource_is_isolated() {
    let c = cluster("status").await;
    let api = dyn_api::<NodeMaintenance>(&c);
    let mut nm = node_maintenance("n1", "node-1");
    nm.data["status"] = json!({"phase": "Completed"});
    let created = api.create(&PostParams::default(), &nm).await.unwrap();
    assert!(created.data.get("status").is_none(), "create drops status");
    let pp = PatchParams::default();
    let updated = api
        .patch_status(
            "n1",
            &pp,
            &merge(
                json!({"metadata": {"labels": {"sneaky": "yes"}}, "spec": {"reason": "x"},
                          "status": {"phase": "Pending"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(updated.data["status"]["phase"], "Pending");
    assert_eq!(updated.data["spec"]["reason"], "");
    assert!(updated.metadata.labels.is_none());
    let main = api
        .patch(
            "n1",
            &pp,
            &merge(json!({"spec": {"reason": "y"}, "status": {"phase": "Failed"}})),
        )
        .await
        .unwrap();
    assert_eq!(main.data["spec"]["reason"], "y");
    assert_eq!(main.data["status"]["phase"], "Pending");

    let cms: Api<ConfigMap> = ns_api(&c);
    cms.create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    assert_eq!(api_err(cms.get_status("c").await).code, 404);
    c.cleanup().await;
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let c = cluster("finalizers").await;
    let api: Api<ConfigMap> = ns_api(&c);
    let mut map = cm("f", json!({}));
    map.metadata.finalizers = Some(vec!["slurm-maint.io/cleanup".into()]);
    api.create(&PostParams::default(), &map).await.unwrap();
    let deleted = api.delete("f", &DeleteParams::default()).await.unwrap();
    let held = deleted
        .left()
        .expect("object returned while finalizers remain");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(held.metadata.deletion_grace_period_seconds, Some(0));
    let again = api.get("f").await.unwrap();
    assert_eq!(
        again.metadata.deletion_timestamp,
        held.metadata.deletion_timestamp
    );
    let e = api_err(
        api.patch(
            "f",
            &PatchParams::default(),
            &merge(json!({"metadata": {"finalizers": ["slurm-maint.io/cleanup", "other"]}})),
        )
        .await,
    );
    assert_eq!(e.code, 422);
    api.patch(
        "f",
        &PatchParams::default(),
        &merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_err(api.get("f").await).code, 404);
    c.cleanup().await;
}

#[tokio::test]
async fn server_side_apply_creates_updates_and_needs_a_field_manager() {
    let c = cluster("ssa").await;
    let client = c.client.clone();
    let api: Api<ConfigMap> = ns_api(&c);
    let pp = PatchParams::apply("test").force();
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "ssa", "labels": {"a": "1"}}, "data": {"x": "1"}});
    let created = api.patch("ssa", &pp, &Patch::Apply(&body)).await.unwrap();
    assert_eq!(created.data.unwrap()["x"], "1");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "ssa"}, "data": {"y": "2"}});
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "ssa"}, "data": {"z": "3"}});
    api.patch("ssa", &PatchParams::apply("other"), &Patch::Apply(&other))
        .await
        .unwrap();
    let updated = api.patch("ssa", &pp, &Patch::Apply(&body)).await.unwrap();
    let data = updated.data.unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["y", "z"],
        "fields the manager stopped applying are removed, other managers' fields stay"
    );
    assert!(updated.metadata.labels.unwrap_or_default().is_empty());
    api.patch(
        "ssa",
        &PatchParams::default(),
        &merge(json!({"data": {"y": "edited"}})),
    )
    .await
    .unwrap();
    let without_y = json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "ssa"}, "data": {"w": "4"}});
    let after = api
        .patch("ssa", &pp, &Patch::Apply(&without_y))
        .await
        .unwrap();
    let data = after.data.unwrap();
    assert_eq!(
        data.get("y").map(String::as_str),
        Some("edited"),
        "a field another writer changed is no longer the applier's to remove"
    );

    let takeover = json!({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "ssa"}, "data": {"w": "5"}});
    let e = api_err(
        api.patch(
            "ssa",
            &PatchParams::apply("other"),
            &Patch::Apply(&takeover),
        )
        .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains("conflict with \"test\""),
        "{}",
        e.message
    );
    let same = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "ssa"}, "data": {"w": "4", "z": "3"}});
    api.patch("ssa", &PatchParams::apply("other"), &Patch::Apply(&same))
        .await
        .expect("applying a value the owner also applies is no conflict");
    api.patch(
        "ssa",
        &PatchParams::apply("other").force(),
        &Patch::Apply(&takeover),
    )
    .await
    .unwrap();

    for (manager, finalizer) in [("a", "example.com/a"), ("b", "example.com/b")] {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "fin", "finalizers": [finalizer]}});
        api.patch("fin", &PatchParams::apply(manager), &Patch::Apply(&body))
            .await
            .unwrap();
    }
    let both = api.get("fin").await.unwrap().metadata.finalizers.unwrap();
    assert_eq!(
        both,
        ["example.com/a", "example.com/b"],
        "finalizers are a set"
    );
    let none = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fin"}});
    api.patch("fin", &PatchParams::apply("a"), &Patch::Apply(&none))
        .await
        .unwrap();
    let left = api.get("fin").await.unwrap().metadata.finalizers.unwrap();
    assert_eq!(left, ["example.com/b"]);
    api.patch("fin", &PatchParams::apply("b"), &Patch::Apply(&none))
        .await
        .unwrap();

    let req =
        axum::http::Request::patch(format!("/api/v1/namespaces/{}/configmaps/ssa", c.namespace))
            .header("content-type", "application/apply-patch+yaml")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap();
    let e = api_err(client.request::<ConfigMap>(req).await);
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(e.message.contains("fieldManager"), "{}", e.message);
    let e = api_err(
        api.patch(
            "ssa",
            &pp,
            &Patch::Apply(json!({"metadata": {"name": "ssa"}})),
        )
        .await,
    );
    assert_eq!(e.code, 400, "apply needs apiVersion and kind");
    c.cleanup().await;
}

#[tokio::test]
async fn merge_patch_sets_and_removes_fields() {
    let c = cluster("merge").await;
    let api: Api<ConfigMap> = ns_api(&c);
    let mut map = cm("m", json!({"keep": "1", "drop": "2"}));
    map.data = Some([("a".into(), "1".into()), ("b".into(), "2".into())].into());
    api.create(&PostParams::default(), &map).await.unwrap();
    let patched = api
        .patch(
            "m",
            &PatchParams::default(),
            &merge(json!({"metadata": {"labels": {"drop": null, "new": "3"}},
                          "data": {"a": null, "c": "3"}})),
        )
        .await
        .unwrap();
    let labels = patched.metadata.labels.unwrap();
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["keep", "new"]);
    let data = patched.data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["b", "c"]);
    let strategic = api
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"d": "4"}})),
        )
        .await
        .unwrap();
    assert_eq!(strategic.data.unwrap()["d"], "4");
    c.cleanup().await;
}

#[tokio::test]
async fn label_and_field_selectors() {
    let c = cluster("label").await;
    let api: Api<ConfigMap> = ns_api(&c);
    // `set=sel` keeps out what else lives in the namespace (`kube-root-ca.crt`).
    for (name, labels) in [
        ("a", json!({"set": "sel", "app": "x", "tier": "web"})),
        ("b", json!({"set": "sel", "app": "y", "tier": "db"})),
        ("c", json!({"set": "sel", "app": "x"})),
    ] {
        api.create(&PostParams::default(), &cm(name, labels))
            .await
            .unwrap();
    }
    let names = |sel: &str| {
        let api = api.clone();
        let lp = ListParams::default().labels(&format!("set=sel,{sel}"));
        async move {
            api.list(&lp)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| c.metadata.name.unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("app=x").await, ["a", "c"]);
    assert_eq!(names("app==x,tier=web").await, ["a"]);
    assert_eq!(names("app!=x").await, ["b"]);
    assert_eq!(names("tier in (web, db)").await, ["a", "b"]);
    assert_eq!(names("tier notin (web)").await, ["b", "c"]);
    assert_eq!(names("tier").await, ["a", "b"]);
    assert_eq!(names("!tier").await, ["c"]);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let e = api_err(api.list(&ListParams::default().fields("data.k=v")).await);
    assert_eq!(e.code, 400);

    let list = api
        .list(&ListParams::default().labels("set=sel").limit(2))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 2);
    let token = list.metadata.continue_.clone().expect("continue token");
    let rest = api
        .list(
            &ListParams::default()
                .labels("set=sel")
                .limit(2)
                .continue_token(&token),
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.metadata.continue_.is_none_or(|c| c.is_empty()));
    assert!(list.metadata.resource_version.is_some());
    c.cleanup().await;
}

#[tokio::test]
async fn watch_from_resource_version_delivers_later_changes() {
    let c = cluster("watch").await;
    let api: Api<ConfigMap> = ns_api(&c);
    api.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("after", json!({})))
        .await
        .unwrap();
    api.patch(
        "after",
        &PatchParams::default(),
        &merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    api.delete("after", &DeleteParams::default()).await.unwrap();
    let mut seen = vec![];
    while seen.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let (what, name) = match ev {
            WatchEvent::Added(c) => ("ADDED", c.metadata.name.unwrap()),
            WatchEvent::Modified(c) => ("MODIFIED", c.metadata.name.unwrap()),
            WatchEvent::Deleted(c) => ("DELETED", c.metadata.name.unwrap()),
            WatchEvent::Bookmark(_) => continue,
            other => panic!("{other:?}"),
        };
        // A real cluster's controller-manager publishes kube-root-ca.crt meanwhile.
        if name != "kube-root-ca.crt" {
            seen.push(format!("{what} {name}"));
        }
    }
    assert_eq!(seen, ["ADDED after", "MODIFIED after", "DELETED after"]);

    let labelled = api
        .watch(&WatchParams::default().labels("app=x").timeout(1), "0")
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("x", json!({"app": "x"})))
        .await
        .unwrap();
    let events: Vec<_> = labelled.try_collect().await.unwrap();
    let events: Vec<_> = events
        .into_iter()
        .filter(|e| !matches!(e, WatchEvent::Bookmark(_)))
        .collect();
    assert!(
        matches!(events.as_slice(), [WatchEvent::Added(c)] if c.metadata.name.as_deref() == Some("x")),
        "{events:?}"
    );
    c.cleanup().await;
}

#[tokio::test]
async fn watch_from_compacted_resource_version_is_expired() {
    let s = ApiServer::new();
    let kind = s.lock().find_kind("", "v1", "configmaps").unwrap();
    {
        let mut st = s.lock();
        st.create(
            &kind,
            Some("default"),
            json!({"metadata": {"name": "busy"}}),
            false,
        )
        .unwrap();
        for i in 0..store::HISTORY_LIMIT {
            st.patch(
                &kind,
                Some("default"),
                "busy",
                store::PatchBody {
                    how: store::PatchKind::Merge,
                    body: json!({"data": {"i": i.to_string()}}),
                },
                false,
                false,
            )
            .unwrap();
        }
    }
    let api: Api<ConfigMap> = Api::default_namespaced(s.client());
    let events: Vec<_> = api
        .watch(&WatchParams::default().timeout(5), "2")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    match events.as_slice() {
        [WatchEvent::Error(e)] => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn runtime_watcher_and_reflector_follow_changes() {
    let c = cluster("runtime").await;
    let api: Api<ConfigMap> = ns_api(&c);
    let mine = json!({"set": "rt"});
    api.create(&PostParams::default(), &cm("one", mine.clone()))
        .await
        .unwrap();
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().labels("set=rt");
    let stream = reflector(writer, watcher(api.clone(), config))
        .applied_objects()
        .boxed();
    let driver = tokio::spawn(stream.for_each(|_| async {}));
    let wait_for = |pred: StorePredicate| {
        let reader = reader.clone();
        async move {
            for _ in 0..200 {
                if pred(&reader) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!(
                "store never reached the expected state: {:?}",
                reader.state()
            );
        }
    };
    wait_for(Box::new(|r| r.state().len() == 1)).await;
    api.create(&PostParams::default(), &cm("two", mine.clone()))
        .await
        .unwrap();
    api.patch(
        "one",
        &PatchParams::default(),
        &merge(json!({"data": {"k": "changed"}})),
    )
    .await
    .unwrap();
    api.delete("two", &DeleteParams::default()).await.unwrap();
    api.create(&PostParams::default(), &cm("three", mine.clone()))
        .await
        .unwrap();
    wait_for(Box::new(|r| {
        let mut names: Vec<String> = r
            .state()
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        names.sort();
        names == ["one", "three"]
            && r.state().iter().any(|c| {
                c.data
                    .as_ref()
                    .is_some_and(|d| d.get("k").map(String::as_str) == Some("changed"))
            })
    }))
    .await;
    driver.abort();
    c.cleanup().await;
}

#[tokio::test]
async fn owner_references_are_garbage_collected() {
    let c = cluster("owner").await;
    let policies = dyn_api::<MaintenancePolicy>(&c);
    let owner = policies
        .create(
            &PostParams::default(),
            &policy("p", json!({"maxUnavailable": 1})),
        )
        .await
        .unwrap();
    let oref = json!([{"apiVersion": "slurm-maint.io/v1alpha1", "kind": "MaintenancePolicy",
                       "name": "p", "uid": owner.metadata.uid, "controller": true}]);
    let nms = dyn_api::<NodeMaintenance>(&c);
    let mut child = node_maintenance("child", "node-1");
    child.metadata.owner_references = Some(serde_json::from_value(oref.clone()).unwrap());
    nms.create(&PostParams::default(), &child).await.unwrap();
    let cms: Api<ConfigMap> = ns_api(&c);
    let mut grandchild = cm("grandchild", json!({}));
    let child_uid = nms.get("child").await.unwrap().metadata.uid;
    grandchild.metadata.owner_references = Some(
        serde_json::from_value(json!([{"apiVersion": "slurm-maint.io/v1alpha1",
            "kind": "NodeMaintenance", "name": "child", "uid": child_uid}]))
        .unwrap(),
    );
    cms.create(&PostParams::default(), &grandchild)
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("unrelated", json!({})))
        .await
        .unwrap();

    policies
        .delete("p", &DeleteParams::background())
        .await
        .unwrap();
    eventually_gone(&nms, "child").await;
    eventually_gone(&cms, "grandchild").await;
    cms.get("unrelated").await.unwrap();
    c.cleanup().await;
}

#[tokio::test]
async fn namespace_deletion_removes_its_contents() {
    let s = ApiServer::new();
    let client = s.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "scratch"}})).unwrap(),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "scratch");
    api.create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    let all: Api<ConfigMap> = Api::all(client.clone());
    let named_c = ListParams::default().fields("metadata.name=c");
    assert_eq!(all.list(&named_c).await.unwrap().items.len(), 1);
    nss.delete("scratch", &DeleteParams::background())
        .await
        .unwrap();
    assert_eq!(api_err(api.get("c").await).code, 404);
    assert_eq!(api_err(nss.get("scratch").await).code, 404);
}

#[tokio::test]
async fn crds_register_kinds_and_report_established() {
    let s = ApiServer::new();
    let client = s.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let policies: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::erase::<MaintenancePolicy>(&()),
    );
    assert_eq!(
        api_err(policies.list(&ListParams::default()).await).code,
        404
    );
    for crd in crate::api::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let crd = crds
        .get("maintenancepolicies.slurm-maint.io")
        .await
        .unwrap();
    let conditions = crd.status.unwrap().conditions.unwrap();
    for t in ["NamesAccepted", "Established"] {
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == t && c.status == "True")
        );
    }
    policies
        .create(
            &PostParams::default(),
            &policy("p", json!({"maxUnavailable": 1})),
        )
        .await
        .unwrap();
    crds.delete(
        "maintenancepolicies.slurm-maint.io",
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        api_err(policies.list(&ListParams::default()).await).code,
        404
    );
}

#[tokio::test]
async fn custom_resources_are_validated_defaulted_and_pruned() {
    let c = cluster("validation").await;
    let policies = dyn_api::<MaintenancePolicy>(&c);
    let nms = dyn_api::<NodeMaintenance>(&c);

    let mut typed = policy("typed", json!({"maxUnavailable": "many"}));
    typed.data["spec"]["unknownField"] = json!(true);
    let e = api_err(policies.create(&PostParams::default(), &typed).await);
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message
            .starts_with("MaintenancePolicy.slurm-maint.io \"typed\" is invalid: ")
            && e.message
                .contains("spec.budget.maxUnavailable: Invalid value"),
        "{}",
        e.message
    );
    let causes = e.details.unwrap().causes;
    assert_eq!(causes[0].field, "spec.budget.maxUnavailable");

    let e = api_err(
        nms.create(&PostParams::default(), &node_maintenance("p", "bad node!"))
            .await,
    );
    assert_eq!(e.code, 422);
    assert!(e.message.contains("should match"), "{}", e.message);

    let mut strict = policy("strict", json!({"maxUnavailable": 2}));
    strict.data["spec"]["unknownField"] = json!(true);
    policies
        .create(&PostParams::default(), &strict)
        .await
        .unwrap();
    if modern(&c).await {
        let pp = PatchParams::default().validation_strict();
        let e = api_err(
            policies
                .patch("strict", &pp, &merge(json!({"spec": {"typo": 1}})))
                .await,
        );
        assert!(
            e.message
                .contains("strict decoding error: unknown field \"spec.typo\""),
            "{}",
            e.message
        );
        if minor(&c).await >= 30 {
            // A strict patch is refused as an invalid `patch` that quotes the patched object.
            assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
            assert!(
                e.message
                    .starts_with(" \"\" is invalid: patch: Invalid value: \"{"),
                "{}",
                e.message
            );
            let causes = e.details.unwrap().causes;
            assert_eq!(causes.len(), 1);
            assert_eq!(
                (causes[0].field.as_str(), causes[0].reason.as_str()),
                ("patch", "FieldValueInvalid")
            );
        }
    }

    let mut good = policy("good", json!({"maxUnavailable": 2}));
    good.data["spec"]["unknownField"] = json!(true);
    let created = policies
        .create(&PostParams::default(), &good)
        .await
        .unwrap();
    assert!(created.data["spec"].get("unknownField").is_none(), "pruned");
    assert!(
        created.data["spec"].as_object().unwrap().len() > 3,
        "defaults applied: {}",
        created.data["spec"]
    );

    if modern(&c).await {
        let e = api_err(
            policies
                .create(
                    &PostParams::default(),
                    &policy("bad", json!({"maxUnavailablePercent": 0.0})),
                )
                .await,
        );
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
        assert!(
            e.message
                .starts_with("MaintenancePolicy.slurm-maint.io \"bad\" is invalid: spec.budget"),
            "{}",
            e.message
        );
        assert!(e.message.contains("greater than 0"), "{}", e.message);
        let both = json!({"maxUnavailable": 1, "maxUnavailablePercent": 10.0});
        let e = api_err(
            policies
                .create(&PostParams::default(), &policy("both", both))
                .await,
        );
        assert_eq!(e.code, 422);
        assert!(e.message.contains("not both"), "{}", e.message);

        nms.create(&PostParams::default(), &node_maintenance("n", "node-1"))
            .await
            .unwrap();
        let e = api_err(
            nms.patch(
                "n",
                &PatchParams::default(),
                &merge(json!({"spec": {"nodeName": "node-2"}})),
            )
            .await,
        );
        assert_eq!(e.code, 422);
        assert!(e.message.contains("nodeName is immutable"), "{}", e.message);
    }
    c.cleanup().await;
}

#[tokio::test]
async fn discovery_lists_builtin_and_custom_kinds() {
    let s = server();
    let discovery = kube::discovery::Discovery::new(s.client())
        .run()
        .await
        .unwrap();
    let kinds: Vec<String> = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .map(|(r, _)| r.kind)
        .collect();
    for k in [
        "MaintenancePolicy",
        "NodeMaintenance",
        "Lease",
        "ConfigMap",
        "Namespace",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
}

#[tokio::test]
async fn serves_http_for_a_kubeconfig_client() {
    let s = ApiServer::new();
    let (addr, handle) = s.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&ApiServer::kubeconfig_yaml(addr)).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert!(version.git_version.contains("embedded"));
    let namespaces: Api<Namespace> = Api::all(client);
    let list = namespaces.list(&ListParams::default()).await.unwrap();
    assert!(
        list.items
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("default"))
    );
    handle.abort();
}

#[tokio::test]
async fn harness_applies_crds_and_makes_a_namespace() {
    if std::env::var(harness::KUBECONFIG_ENV).is_ok() {
        return;
    }
    let cluster = TestCluster::start("Harness Test").await;
    assert!(!cluster.is_real());
    assert!(cluster.namespace.starts_with("harness-test-"));
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        &cluster.namespace,
        &ApiResource::erase::<MaintenancePolicy>(&()),
    );
    api.create(
        &PostParams::default(),
        &policy("p", json!({"maxUnavailable": 1})),
    )
    .await
    .unwrap();
    let client = cluster.client.clone();
    let ns = cluster.namespace.clone();
    cluster.cleanup().await;
    let e = api_err(Api::<Namespace>::all(client).get(&ns).await);
    assert_eq!(e.code, 404);
}

async fn kubectl(kubeconfig: &std::path::Path, args: &[&str], stdin: Option<&str>) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .await
        .unwrap();
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("kubectl finished")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubectl {args:?}: {text}");
    text
}

#[tokio::test]
async fn kubectl_can_use_the_served_api() {
    if std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        return;
    }
    let s = ApiServer::new();
    let (addr, handle) = s.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let path = std::env::temp_dir().join(format!("slurm-maint-kubeconfig-{}", addr.port()));
    std::fs::write(&path, ApiServer::kubeconfig_yaml(addr)).unwrap();
    let crds = crate::api::crds_yaml();
    kubectl(&path, &["apply", "--server-side", "-f", "-"], Some(&crds)).await;
    let p1 = serde_yaml::to_string(&policy("p1", json!({"maxUnavailable": 1}))).unwrap();
    kubectl(&path, &["create", "-f", "-"], Some(&p1)).await;
    let table = kubectl(&path, &["get", "mpol"], None).await;
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("PARTITION"),
        "{table}"
    );
    assert!(table.contains("p1") && table.contains("batch"), "{table}");
    let all = kubectl(&path, &["get", "slurm-maint", "-o", "name"], None).await;
    assert!(all.contains("maintenancepolicy.slurm-maint.io/p1"), "{all}");
    kubectl(&path, &["label", "mpol", "p1", "team=hpc"], None).await;
    let labelled = kubectl(
        &path,
        &["get", "mpol", "-l", "team=hpc", "-o", "json"],
        None,
    )
    .await;
    assert!(labelled.contains("\"team\": \"hpc\""), "{labelled}");
    for budget in [1, 2] {
        let p2 = serde_yaml::to_string(&policy("p2", json!({"maxUnavailable": budget}))).unwrap();
        kubectl(&path, &["apply", "-f", "-"], Some(&p2)).await;
    }
    let p2 = kubectl(&path, &["get", "mpol", "p2", "-o", "json"], None).await;
    assert!(p2.contains("\"maxUnavailable\": 2"), "{p2}");
    let mut watch = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&path)
        .args(["get", "mpol", "--watch", "--output-watch-events"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(watch.stdout.take().unwrap()));
    let mut seen = vec![];
    while seen.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("kubectl get --watch printed")
            .unwrap()
            .expect("a line");
        seen.push(line);
    }
    assert!(
        seen[0].starts_with("EVENT") && seen[0].contains("PARTITION"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("ADDED") && l.contains("p2")),
        "{seen:?}"
    );
    drop(watch);
    kubectl(&path, &["delete", "mpol", "p1", "p2"], None).await;
    let none = kubectl(&path, &["get", "mpol"], None).await;
    assert!(none.contains("No resources found"), "{none}");
    let _ = std::fs::remove_file(&path);
    handle.abort();
}

#[tokio::test]
async fn runtime_watcher_relists_after_expired_history() {
    let s = ApiServer::new();
    let kind = s.lock().find_kind("", "v1", "configmaps").unwrap();
    s.lock()
        .create(
            &kind,
            Some("kube-system"),
            json!({"metadata": {"name": "busy"}}),
            false,
        )
        .unwrap();
    let api: Api<ConfigMap> = Api::all(s.client());
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default()))
        .applied_objects()
        .boxed();
    let driver = tokio::spawn(stream.for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();
    {
        let mut st = s.lock();
        for i in 0..=store::HISTORY_LIMIT {
            let body = json!({"data": {"i": i.to_string()}});
            let patch = store::PatchBody {
                how: store::PatchKind::Merge,
                body,
            };
            st.patch(&kind, Some("kube-system"), "busy", patch, false, false)
                .unwrap();
        }
    }
    let last = store::HISTORY_LIMIT.to_string();
    for _ in 0..200 {
        let seen = reader
            .state()
            .iter()
            .any(|c| c.data.as_ref().is_some_and(|d| d.get("i") == Some(&last)));
        if seen {
            driver.abort();
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the watcher never caught up after 410 Expired");
}

#[tokio::test]
async fn json_patch_and_dry_run() {
    let s = ApiServer::new();
    let client = s.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("j", json!({"a": "1"})))
        .await
        .unwrap();
    let ops = json!([
        {"op": "test", "path": "/metadata/labels/a", "value": "1"},
        {"op": "add", "path": "/data", "value": {"x": "1"}},
        {"op": "replace", "path": "/metadata/labels/a", "value": "2"},
    ]);
    let req = axum::http::Request::patch("/api/v1/namespaces/default/configmaps/j")
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&ops).unwrap())
        .unwrap();
    let patched: ConfigMap = client.request(req).await.unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["a"], "2");
    assert_eq!(patched.data.unwrap()["x"], "1");

    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let would = api.create(&dry, &cm("ghost", json!({}))).await.unwrap();
    assert_eq!(would.metadata.name.as_deref(), Some("ghost"));
    assert_eq!(api_err(api.get("ghost").await).code, 404);
}

/// Every cause as `field: message`, as `apierrors.NewInvalid` joins them into the message.
fn cause_lines(e: &Status) -> Vec<String> {
    e.details
        .as_ref()
        .map(|d| {
            d.causes
                .iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect()
        })
        .unwrap_or_default()
}

/// The message a real server writes for a 422 with these causes.
fn invalid_message(group_kind: &str, name: &str, lines: &[String]) -> String {
    let joined = if lines.len() == 1 {
        lines[0].clone()
    } else {
        format!("[{}]", lines.join(", "))
    };
    format!("{group_kind} \"{name}\" is invalid: {joined}")
}

const NOT_CHECKED: &str = "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

#[tokio::test]
async fn several_validation_errors_come_back_in_one_message() {
    let c = cluster("invalid").await;
    let nms = dyn_api::<NodeMaintenance>(&c);
    let policies = dyn_api::<MaintenancePolicy>(&c);
    let recent = minor(&c).await >= 30;
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };

    // OpenAPI errors of which some block the CEL rules (required fields, a bad
    // date-time): every error is a cause, the message lists them all in brackets, and
    // the CEL rules are reported as not checked, last.
    let mut nm = node_maintenance("blocked", "bad node!");
    let spec = nm.data["spec"].as_object_mut().unwrap();
    spec.remove("policy");
    spec.insert("requestedAt".into(), json!("yesterday"));
    let e = api_err(nms.create(&PostParams::default(), &nm).await);
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    let details = e.details.clone().unwrap();
    assert_eq!(
        (
            details.name.as_str(),
            details.group.as_str(),
            details.kind.as_str()
        ),
        ("blocked", "slurm-maint.io", "NodeMaintenance")
    );
    let lines = cause_lines(&e);
    assert_eq!(
        e.message,
        invalid_message("NodeMaintenance.slurm-maint.io", "blocked", &lines)
    );
    let mut want = vec![
        "spec.nodeName: Invalid value: \"bad node!\": spec.nodeName in body should match '^[A-Za-z0-9][A-Za-z0-9_.-]*$'".to_string(),
        "spec.policy: Required value".to_string(),
        "spec.requestedAt: Invalid value: \"yesterday\": spec.requestedAt in body must be of type date-time: \"yesterday\"".to_string(),
    ];
    if recent {
        assert_eq!(
            lines.last().map(String::as_str),
            Some(NOT_CHECKED),
            "{lines:?}"
        );
        want.push(NOT_CHECKED.into());
        let reasons: Vec<&str> = details.causes.iter().map(|c| c.reason.as_str()).collect();
        assert!(
            reasons.contains(&"FieldValueTypeInvalid") && reasons.contains(&"FieldValueRequired"),
            "{reasons:?}"
        );
        assert_eq!(details.causes.last().unwrap().reason, "FieldValueInvalid");
        assert_eq!(details.causes.last().unwrap().field, "<nil>");
    }
    // Sibling fields come in Go map order on a real server: compare as sets.
    assert_eq!(sorted(lines), sorted(want));

    // Errors that do not block CEL (a pattern, a bad label): the rules still run and
    // their errors join the same message, metadata first.
    let mut nm = node_maintenance("unblocked", "bad node!");
    nm.metadata.labels = Some([("team".to_string(), "not ok!".to_string())].into());
    nm.data["spec"]["action"] = json!("OciMaintenance");
    let e = api_err(nms.create(&PostParams::default(), &nm).await);
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    let lines = cause_lines(&e);
    assert_eq!(
        e.message,
        invalid_message("NodeMaintenance.slurm-maint.io", "unblocked", &lines)
    );
    assert!(
        lines[0].starts_with("metadata.labels: Invalid value: \"not ok!\": a valid label"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("spec.nodeName: Invalid value")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l == NOT_CHECKED), "{lines:?}");
    if recent {
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(
            lines[2],
            "spec: Invalid value: \"object\": action OciMaintenance requires ociEvent"
        );
    }

    // Too long and too many items block the rules as well; two rules failing on two
    // list items are two causes with the same message.
    let long_zone = "A".repeat(65);
    let windows = json!([
        {"start": "01:00", "end": "01:00"},
        {"start": "02:00", "end": "03:00", "timeZone": long_zone,
         "days": ["Mon", "Mon", "Mon", "Mon", "Mon", "Mon", "Mon", "Mon"]},
    ]);
    let mut p = policy("sizes", json!({"maxUnavailable": 1}));
    p.data["spec"]["campaign"] = json!({"windows": windows});
    let e = api_err(policies.create(&PostParams::default(), &p).await);
    let lines = cause_lines(&e);
    assert_eq!(
        e.message,
        invalid_message("MaintenancePolicy.slurm-maint.io", "sizes", &lines)
    );
    if recent {
        assert_eq!(
            sorted(lines),
            sorted(vec![
                "spec.campaign.windows[1].timeZone: Too long: may not be more than 64 bytes".into(),
                "spec.campaign.windows[1].days: Too many: 8: must have at most 7 items".into(),
                NOT_CHECKED.into(),
            ])
        );
        let mut p = policy("twice", json!({"maxUnavailable": 1}));
        p.data["spec"]["campaign"] = json!({"windows": [
            {"start": "01:00", "end": "01:00"}, {"start": "02:00", "end": "02:00"},
        ]});
        let e = api_err(policies.create(&PostParams::default(), &p).await);
        let lines = cause_lines(&e);
        let rule = "Invalid value: \"object\": window start and end must differ";
        assert_eq!(
            lines,
            [
                format!("spec.campaign.windows[0]: {rule}"),
                format!("spec.campaign.windows[1]: {rule}"),
            ]
        );
        assert_eq!(
            e.message,
            invalid_message("MaintenancePolicy.slurm-maint.io", "twice", &lines)
        );
    }

    // One error alone: no brackets (a ConfigMap has no CEL rules to skip).
    let cms: Api<ConfigMap> = ns_api(&c);
    let e = api_err(
        cms.create(&PostParams::default(), &cm("Bad_Name", json!({})))
            .await,
    );
    let lines = cause_lines(&e);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        e.message,
        format!("ConfigMap \"Bad_Name\" is invalid: {}", lines[0])
    );
    c.cleanup().await;
}

/// Polls `f` every 100 ms until it returns `Some`, for up to `secs` seconds (a real
/// cluster's controllers act asynchronously); panics with `what` when time runs out.
async fn until<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_namespace_has_the_root_ca_configmap() {
    const ROOT_CA: &str = "kube-root-ca.crt";
    let c = cluster("root-ca").await;
    if minor(&c).await < 30 {
        // The 1.20 fallback runs kube-controller-manager without root-ca-cert-publisher.
        c.cleanup().await;
        return;
    }
    let api: Api<ConfigMap> = ns_api(&c);
    let published = |api: Api<ConfigMap>| async move {
        api.get_opt(ROOT_CA).await.unwrap().filter(|cm| {
            cm.metadata.deletion_timestamp.is_none()
                && cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get("ca.crt"))
                    .is_some_and(|ca| {
                        ca.starts_with("-----BEGIN CERTIFICATE-----")
                            && ca.trim_end().ends_with("-----END CERTIFICATE-----")
                    })
        })
    };
    let first = until(30, "kube-root-ca.crt in a new namespace", || {
        published(api.clone())
    })
    .await;
    let description = first
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubernetes.io/description"))
        .cloned()
        .unwrap_or_default();
    assert!(
        description.starts_with("Contains a CA bundle"),
        "{description:?}"
    );
    let ca = first.data.as_ref().unwrap()["ca.crt"].clone();

    // Namespaces that were there before have one too, with the same CA.
    for ns in ["default", "kube-system", "kube-public"] {
        let there: Api<ConfigMap> = Api::namespaced(c.client.clone(), ns);
        let cm = until(30, "kube-root-ca.crt in an old namespace", || {
            published(there.clone())
        })
        .await;
        assert_eq!(cm.data.unwrap()["ca.crt"], ca, "{ns}");
    }

    // Changed data is put back, and a deleted one is published again.
    api.patch(
        ROOT_CA,
        &PatchParams::default(),
        &merge(json!({"data": {"ca.crt": "tampered"}})),
    )
    .await
    .unwrap();
    until(30, "kube-root-ca.crt repaired", || {
        let api = api.clone();
        let ca = ca.clone();
        async move {
            published(api)
                .await
                .filter(|cm| cm.data.as_ref().unwrap()["ca.crt"] == ca)
        }
    })
    .await;
    api.delete(ROOT_CA, &DeleteParams::default()).await.unwrap();
    let again = until(30, "kube-root-ca.crt published again", || {
        let api = api.clone();
        let uid = first.metadata.uid.clone();
        async move { published(api).await.filter(|cm| cm.metadata.uid != uid) }
    })
    .await;
    assert_eq!(again.data.unwrap()["ca.crt"], ca);
    c.cleanup().await;
}

/// The lines of a watch that ends by its `timeoutSeconds`, as JSON values.
async fn watch_lines(client: &kube::Client, uri: String) -> Vec<Value> {
    let req = axum::http::Request::get(uri).body(vec![]).unwrap();
    let text = client.request_text(req).await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn is_bookmark(e: &Value) -> bool {
    e["type"] == "BOOKMARK"
}

fn bookmark_rv(e: &Value) -> u64 {
    e.pointer("/object/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
        .unwrap_or_else(|| panic!("bookmark without a resource version: {e}"))
}

#[tokio::test]
async fn watches_send_bookmarks_as_a_real_server_does() {
    let c = cluster("bookmarks").await;
    let api: Api<ConfigMap> = ns_api(&c);
    let seen = api
        .create(&PostParams::default(), &cm("seen", json!({"bm": "yes"})))
        .await
        .unwrap();
    let seen_rv: u64 = seen.metadata.resource_version.unwrap().parse().unwrap();
    // A write the label selector hides: the resource's version moves past where the
    // watches below start, which is what lets a bookmark go out.
    let hidden = api
        .create(&PostParams::default(), &cm("hidden", json!({})))
        .await
        .unwrap();
    let hidden_rv: u64 = hidden.metadata.resource_version.unwrap().parse().unwrap();
    let base = format!(
        "/api/v1/namespaces/{}/configmaps?watch=true&labelSelector=bm%3Dyes",
        c.namespace
    );
    let from_seen = format!("{base}&resourceVersion={seen_rv}&timeoutSeconds=5");
    let asked = watch_lines(&c.client, format!("{from_seen}&allowWatchBookmarks=true"));
    let not_asked = watch_lines(&c.client, from_seen.clone());
    let recent = minor(&c).await >= 30;
    let streaming = minor(&c).await >= 34;
    let initial = async {
        if !streaming {
            return vec![];
        }
        let legacy = format!("{base}&allowWatchBookmarks=true&timeoutSeconds=3");
        let explicit = format!("{legacy}&sendInitialEvents=true&resourceVersionMatch=NotOlderThan");
        let (a, b) = tokio::join!(
            watch_lines(&c.client, legacy),
            watch_lines(&c.client, explicit)
        );
        vec![a, b]
    };
    let (asked, not_asked, initial) = tokio::join!(asked, not_asked, initial);

    // Asked for: bookmarks only (nothing the selector sees changed), each with just
    // kind, apiVersion and metadata.resourceVersion, at the resource's newer version.
    assert!(
        !asked.is_empty() || !recent,
        "no bookmark before the watch ended"
    );
    for e in &asked {
        assert!(is_bookmark(e), "{e}");
        let object = e["object"].as_object().unwrap();
        assert_eq!(
            object.keys().map(String::as_str).collect::<Vec<_>>(),
            ["apiVersion", "kind", "metadata"],
            "{e}"
        );
        assert_eq!(
            (object["kind"].as_str(), object["apiVersion"].as_str()),
            (Some("ConfigMap"), Some("v1"))
        );
        assert_eq!(
            object["metadata"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["resourceVersion"],
            "{e}"
        );
        assert!(bookmark_rv(e) >= hidden_rv, "{e} (hidden at {hidden_rv})");
    }
    assert!(not_asked.is_empty(), "{not_asked:?}");

    // A watch from the current state (sendInitialEvents, which 1.34 also assumes for a
    // watch from "" or "0"): the state, then a bookmark that marks its end.
    for lines in initial {
        assert!(lines.len() >= 2, "{lines:?}");
        assert_eq!(lines[0]["type"], "ADDED", "{lines:?}");
        assert_eq!(lines[0]["object"]["metadata"]["name"], "seen");
        let end = &lines[1];
        assert!(is_bookmark(end), "{lines:?}");
        assert_eq!(
            end.pointer("/object/metadata/annotations"),
            Some(&json!({"k8s.io/initial-events-end": "true"})),
            "{end}"
        );
        assert!(bookmark_rv(end) >= hidden_rv, "{end}");
        for later in &lines[2..] {
            assert!(is_bookmark(later), "{lines:?}");
            assert!(
                later.pointer("/object/metadata/annotations").is_none(),
                "{later}"
            );
        }
    }

    if streaming {
        let e = api_err(
            c.client
                .request::<Value>(
                    axum::http::Request::get(format!("{base}&sendInitialEvents=true"))
                        .body(vec![])
                        .unwrap(),
                )
                .await,
        );
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
        assert_eq!(
            e.message,
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
        );
        // kube-rs's streaming-list watcher sees its initial list end by that bookmark.
        let (reader, writer) = reflector::store::<ConfigMap>();
        let config = watcher::Config::default()
            .labels("bm=yes")
            .streaming_lists();
        let stream = reflector(writer, watcher(api.clone(), config))
            .applied_objects()
            .boxed();
        let driver = tokio::spawn(stream.for_each(|_| async {}));
        tokio::time::timeout(Duration::from_secs(30), reader.wait_until_ready())
            .await
            .expect("streaming list finished")
            .unwrap();
        let names: Vec<_> = reader
            .state()
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["seen"]);
        driver.abort();
    }
    c.cleanup().await;
}

#[tokio::test]
async fn events_k8s_io_events_are_also_core_events() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event as NewEvent;
    let c = cluster("events").await;
    let ns = c.namespace.clone();
    let recent = minor(&c).await >= 30;
    let cms: Api<ConfigMap> = ns_api(&c);
    let target = cms
        .create(&PostParams::default(), &cm("target", json!({})))
        .await
        .unwrap();
    let uid = target.metadata.uid.clone().unwrap();
    let regarding = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "target",
                           "namespace": ns, "uid": uid});
    let new_api: Api<NewEvent> = ns_api(&c);
    let core: Api<CoreEvent> = ns_api(&c);
    let started: NewEvent = serde_json::from_value(json!({
        "metadata": {"name": "target.started"},
        "eventTime": "2026-12-03T08:40:00.123456Z",
        "reportingController": "slurm-maint.io/controller", "reportingInstance": "ctl-1",
        "action": "Reconcile", "reason": "Started", "note": "it began", "type": "Normal",
        "regarding": regarding,
        "related": {"apiVersion": "v1", "kind": "Secret", "name": "s", "namespace": ns},
    }))
    .unwrap();
    new_api
        .create(&PostParams::default(), &started)
        .await
        .unwrap();
    let again: NewEvent = serde_json::from_value(json!({
        "metadata": {"name": "target.again"},
        "eventTime": "2026-12-03T08:41:00.000000Z",
        "reportingController": "slurm-maint.io/controller", "reportingInstance": "ctl-1",
        "action": "Reconcile", "reason": "Again", "note": "first", "type": "Warning",
        "regarding": regarding,
    }))
    .unwrap();
    new_api
        .create(&PostParams::default(), &again)
        .await
        .unwrap();
    // kube-rs's Recorder turns a repeat into a series with a merge patch.
    new_api
        .patch(
            "target.again",
            &PatchParams::default(),
            &merge(json!({"series":
                {"count": 3, "lastObservedTime": "2026-12-03T08:42:00.500000Z"}})),
        )
        .await
        .unwrap();
    // Through events.k8s.io only the series may change; core v1 may change the rest.
    let e = api_err(
        new_api
            .patch(
                "target.again",
                &PatchParams::default(),
                &merge(json!({"note": "repeat", "type": "Normal"})),
            )
            .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        !recent
            || e.message
                == "Event \"target.again\" is invalid: [message: Invalid value: \"repeat\": field is immutable, type: Invalid value: \"Normal\": field is immutable]",
        "{}",
        e.message
    );
    core.patch(
        "target.again",
        &PatchParams::default(),
        &merge(json!({"message": "repeat"})),
    )
    .await
    .unwrap();
    // What events.k8s.io refuses to create.
    let bare: NewEvent =
        serde_json::from_value(json!({"metadata": {"name": "bare"}, "note": "x"})).unwrap();
    let e = api_err(new_api.create(&PostParams::default(), &bare).await);
    assert_eq!(e.code, 422);
    assert!(
        !recent
            || e.message
                == "Event \"bare\" is invalid: [involvedObject.namespace: Invalid value: \"\": does not match event.namespace, eventTime: Required value, type: Invalid value: \"\": has invalid value: ]",
        "{}",
        e.message
    );

    // Read as core v1 Events: the same objects, the fields mapped.
    let e = core.get("target.started").await.unwrap();
    assert_eq!(
        e.metadata.uid,
        new_api.get("target.started").await.unwrap().metadata.uid
    );
    assert_eq!(e.message.as_deref(), Some("it began"));
    assert_eq!(e.reason.as_deref(), Some("Started"));
    assert_eq!(e.type_.as_deref(), Some("Normal"));
    assert_eq!(e.action.as_deref(), Some("Reconcile"));
    assert_eq!(e.involved_object.name.as_deref(), Some("target"));
    assert_eq!(e.involved_object.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(e.involved_object.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(
        e.reporting_component.as_deref(),
        Some("slurm-maint.io/controller")
    );
    assert_eq!(e.reporting_instance.as_deref(), Some("ctl-1"));
    assert_eq!(
        e.related.as_ref().and_then(|r| r.name.as_deref()),
        Some("s")
    );
    assert!(e.source.as_ref().is_none_or(|s| s.component.is_none()));
    assert!(e.first_timestamp.is_none() && e.last_timestamp.is_none() && e.count.is_none());
    assert_eq!(
        serde_json::to_value(&e.event_time).unwrap(),
        json!("2026-12-03T08:40:00.123456Z")
    );
    let e = core.get("target.again").await.unwrap();
    assert_eq!(e.message.as_deref(), Some("repeat"));
    let series = e.series.unwrap();
    assert_eq!(series.count, Some(3));
    assert_eq!(
        serde_json::to_value(&series.last_observed_time).unwrap(),
        json!("2026-12-03T08:42:00.500000Z")
    );
    // The fields core v1 always writes.
    let raw = dyn_api::<CoreEvent>(&c)
        .get("target.started")
        .await
        .unwrap();
    for (field, want) in [
        ("source", json!({})),
        ("firstTimestamp", Value::Null),
        ("lastTimestamp", Value::Null),
    ] {
        assert_eq!(raw.data.get(field), Some(&want), "{field}: {}", raw.data);
    }

    // kubectl describe finds them by these field selectors; kubectl get events lists them.
    let names = |sel: String| {
        let core = core.clone();
        async move {
            let mut names: Vec<String> = core
                .list(&ListParams::default().fields(&sel))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|e| e.metadata.name.unwrap())
                .collect();
            names.sort();
            names
        }
    };
    let describe = format!(
        "involvedObject.name=target,involvedObject.namespace={ns},involvedObject.kind=ConfigMap,involvedObject.uid={uid}"
    );
    assert_eq!(names(describe).await, ["target.again", "target.started"]);
    let other = format!("involvedObject.name=target,involvedObject.uid=0{uid}");
    assert!(names(other).await.is_empty());
    assert_eq!(names("reason=Again".into()).await, ["target.again"]);
    let e = api_err(
        core.list(&ListParams::default().fields("involvedObject.colour=red"))
            .await,
    );
    assert_eq!(e.code, 400);
    assert_eq!(
        e.message,
        "field label not supported: involvedObject.colour"
    );

    // The other way round: a core Event is an events.k8s.io Event.
    let legacy: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "target.legacy"},
        "involvedObject": regarding, "reason": "Old", "message": "legacy", "type": "Normal",
        "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": "2026-12-03T08:00:00Z", "lastTimestamp": "2026-12-03T08:30:00Z",
        "count": 4,
    }))
    .unwrap();
    core.create(&PostParams::default(), &legacy).await.unwrap();
    let e = new_api.get("target.legacy").await.unwrap();
    assert_eq!(e.note.as_deref(), Some("legacy"));
    assert_eq!(
        e.regarding.as_ref().and_then(|r| r.uid.as_deref()),
        Some(uid.as_str())
    );
    assert_eq!(
        e.deprecated_source.as_ref().and_then(|s| s.host.as_deref()),
        Some("n1")
    );
    assert_eq!(e.deprecated_count, Some(4));
    assert_eq!(
        serde_json::to_value(&e.deprecated_first_timestamp).unwrap(),
        json!("2026-12-03T08:00:00Z")
    );
    assert_eq!(names("source=kubelet".into()).await, ["target.legacy"]);
    let regarding_target = new_api
        .list(&ListParams::default().fields("regarding.name=target"))
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(regarding_target, 3);
    c.cleanup().await;
}

/// GET `uri` as kubectl asks for a Table.
async fn table(client: &kube::Client, uri: &str) -> Value {
    let req = axum::http::Request::get(uri)
        .header("accept", "application/json;as=Table;g=meta.k8s.io;v=v1")
        .body(vec![])
        .unwrap();
    let t: Value = client.request(req).await.unwrap();
    assert_eq!(
        (t["kind"].as_str(), t["apiVersion"].as_str()),
        (Some("Table"), Some("meta.k8s.io/v1")),
        "{t}"
    );
    t
}

fn column_names(t: &Value) -> Vec<String> {
    t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn row<'a>(t: &'a Value, name: &str) -> &'a Vec<Value> {
    t["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["object"]["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no row {name}: {t}"))["cells"]
        .as_array()
        .unwrap()
}

/// An age of something made during the test: `0s` to `119s`.
fn fresh(cell: &Value) -> bool {
    cell.as_str()
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n < 120)
}

#[tokio::test]
async fn tables_give_ages_as_a_real_server_does() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    let c = cluster("tables").await;
    let ns = c.namespace.clone();
    let client = c.client.clone();
    if minor(&c).await < 30 {
        // Checked against 1.34's printers; the 1.20 fallback prints differently.
        c.cleanup().await;
        return;
    }

    // A custom resource of the project: Name, then its printer columns as declared.
    let nms = dyn_api::<NodeMaintenance>(&c);
    nms.create(&PostParams::default(), &node_maintenance("aged", "node-1"))
        .await
        .unwrap();
    let t = table(
        &client,
        &format!("/apis/slurm-maint.io/v1alpha1/namespaces/{ns}/nodemaintenances"),
    )
    .await;
    let crd = crate::api::crds()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("nodemaintenances.slurm-maint.io"))
        .unwrap();
    let declared = crd.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap_or_default();
    let columns = t["columnDefinitions"].as_array().unwrap();
    assert_eq!(columns.len(), declared.len() + 1);
    assert_eq!(
        (columns[0]["name"].as_str(), columns[0]["format"].as_str()),
        (Some("Name"), Some("name"))
    );
    assert!(
        columns[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("Name must be unique")
    );
    for (got, want) in columns[1..].iter().zip(&declared) {
        assert_eq!(got["name"], want.name.as_str());
        assert_eq!(got["type"], want.type_.as_str());
        let description = want.description.clone().unwrap_or_else(|| {
            format!(
                "Custom resource definition column (in JSONPath format): {}",
                want.json_path
            )
        });
        assert_eq!(got["description"], description.as_str());
        assert_eq!(got["priority"], want.priority.unwrap_or(0));
    }
    let cells = row(&t, "aged");
    assert_eq!(
        (cells[0].as_str(), cells[1].as_str()),
        (Some("aged"), Some("node-1"))
    );
    let age_at = declared.iter().position(|c| c.name == "Age").unwrap() + 1;
    assert!(fresh(&cells[age_at]), "{cells:?}");
    let one = table(
        &client,
        &format!("/apis/slurm-maint.io/v1alpha1/namespaces/{ns}/nodemaintenances/aged"),
    )
    .await;
    // The same row from a GET, but for the age, which may have crossed a second since.
    let mut again = row(&one, "aged").clone();
    assert!(fresh(&again[age_at]), "{again:?}");
    let mut listed = cells.clone();
    again.remove(age_at);
    listed.remove(age_at);
    assert_eq!(again, listed);

    // Every kind of printer column, on a CRD of the test's own: `date` cells as ages
    // (`<invalid>` for a future or unparsable time), typed cells, null for what is
    // missing.
    let clocks = "tableclocks.e2e.slurm-maint.io";
    let column =
        |name: &str, t: &str, path: &str| json!({"name": name, "type": t, "jsonPath": path});
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": clocks},
        "spec": {
            "group": "e2e.slurm-maint.io", "scope": "Namespaced",
            "names": {"plural": "tableclocks", "singular": "tableclock", "kind": "TableClock",
                      "listKind": "TableClockList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
                "additionalPrinterColumns": [
                    column("Past", "date", ".spec.past"),
                    column("Future", "date", ".spec.future"),
                    column("Garbled", "date", ".spec.garbled"),
                    column("Missing", "date", ".spec.missing"),
                    column("Count", "integer", ".spec.count"),
                    column("Ratio", "number", ".spec.ratio"),
                    column("Flag", "boolean", ".spec.flag"),
                    column("Text", "string", ".spec.count"),
                    column("Nested", "string", ".spec.nested"),
                    column("Wrong", "integer", ".spec.flag"),
                ]}],
        },
    }))
    .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        clocks,
        &PatchParams::apply("slurm-maint-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let resource = ApiResource {
        group: "e2e.slurm-maint.io".into(),
        version: "v1".into(),
        api_version: "e2e.slurm-maint.io/v1".into(),
        kind: "TableClock".into(),
        plural: "tableclocks".into(),
    };
    let clock_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    let past = "2020-01-01T00:00:00Z";
    let clock = obj(json!({
        "apiVersion": "e2e.slurm-maint.io/v1", "kind": "TableClock",
        "metadata": {"name": "c1"},
        "spec": {"past": past, "future": "2999-01-01T00:00:00Z", "garbled": "soon",
                 "count": 3, "ratio": 0.5, "flag": true, "nested": {"b": 1, "a": [1, 2]}},
    }));
    until(30, "the test CRD served", || {
        let api = clock_api.clone();
        let clock = clock.clone();
        async move { api.create(&PostParams::default(), &clock).await.ok() }
    })
    .await;
    let t = table(
        &client,
        &format!("/apis/e2e.slurm-maint.io/v1/namespaces/{ns}/tableclocks"),
    )
    .await;
    assert_eq!(
        column_names(&t),
        [
            "Name", "Past", "Future", "Garbled", "Missing", "Count", "Ratio", "Flag", "Text",
            "Nested", "Wrong"
        ]
    );
    let since = jiff::Timestamp::now()
        .duration_since(past.parse().unwrap())
        .as_nanos();
    assert_eq!(
        row(&t, "c1")[..],
        [
            json!("c1"),
            json!(super::table::human_duration(since)),
            json!("<invalid>"),
            json!("<invalid>"),
            Value::Null,
            json!(3),
            json!(0.5),
            json!(true),
            json!("3"),
            json!("{\"a\":[1,2],\"b\":1}"),
            Value::Null
        ]
    );
    crds.delete(clocks, &DeleteParams::default()).await.unwrap();

    // Built-in kinds: their printers, the age already rendered.
    let cms: Api<ConfigMap> = ns_api(&c);
    let mut two = cm("two", json!({}));
    two.data = Some([("a".into(), "1".into()), ("b".into(), "2".into())].into());
    cms.create(&PostParams::default(), &two).await.unwrap();
    let t = table(&client, &format!("/api/v1/namespaces/{ns}/configmaps")).await;
    assert_eq!(column_names(&t), ["Name", "Data", "Age"]);
    assert!(
        t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["type"] == "string")
    );
    let cells = row(&t, "two");
    assert_eq!(cells[..2], [json!("two"), json!(2)]);
    assert!(fresh(&cells[2]), "{cells:?}");
    let t = table(&client, &format!("/api/v1/namespaces/{ns}")).await;
    assert_eq!(column_names(&t), ["Name", "Status", "Age"]);
    let cells = row(&t, &ns);
    assert_eq!(cells[1], "Active");
    assert!(fresh(&cells[2]), "{cells:?}");

    // Events print as kubectl get events shows them.
    let ten_minutes_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(600);
    let event: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "two.started"},
        "involvedObject": {"apiVersion": "v1", "kind": "ConfigMap", "name": "two", "namespace": ns},
        "reason": "Started", "message": "it began ", "type": "Normal",
        "eventTime": ten_minutes_ago.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "reportingComponent": "slurm-maint.io/controller", "reportingInstance": "ctl-1",
        "action": "Reconcile",
    }))
    .unwrap();
    ns_api::<CoreEvent>(&c)
        .create(&PostParams::default(), &event)
        .await
        .unwrap();
    let want = [
        json!("10m"),
        json!("Normal"),
        json!("Started"),
        json!("configmap/two"),
        json!(""),
        json!("slurm-maint.io/controller, ctl-1"),
        json!("it began"),
        json!("10m"),
        json!(1),
        json!("two.started"),
    ];
    for api in ["api/v1", "apis/events.k8s.io/v1"] {
        let t = table(&client, &format!("/{api}/namespaces/{ns}/events")).await;
        assert_eq!(
            column_names(&t),
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        assert_eq!(row(&t, "two.started")[..], want, "{api}");
    }

    // Kinds without a printer of their own: the raw creation time.
    let crd = "nodemaintenances.slurm-maint.io";
    let t = table(
        &client,
        &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}"),
    )
    .await;
    assert_eq!(column_names(&t), ["Name", "Created At"]);
    assert_eq!(t["columnDefinitions"][1]["type"], "date");
    let created = Api::<CustomResourceDefinition>::all(client.clone())
        .get(crd)
        .await
        .unwrap()
        .metadata
        .creation_timestamp
        .unwrap();
    assert_eq!(row(&t, crd)[1], serde_json::to_value(&created).unwrap());
    c.cleanup().await;
}

#[tokio::test]
async fn kubectl_describe_and_get_show_events_and_ages() {
    if std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        return;
    }
    let s = server();
    let (addr, handle) = s.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let path = std::env::temp_dir().join(format!("slurm-maint-kubeconfig-{}", addr.port()));
    std::fs::write(&path, ApiServer::kubeconfig_yaml(addr)).unwrap();
    let client = s.client();
    let nms: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::erase::<NodeMaintenance>(&()),
    );
    let nm = nms
        .create(&PostParams::default(), &node_maintenance("n1", "node-1"))
        .await
        .unwrap();
    // What the controllers' Recorder writes: an events.k8s.io Event about the object.
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "slurm-maint.io/controller".into(),
            instance: Some("ctl-1".into()),
        },
    );
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Normal,
        reason: "Reserved".into(),
        note: Some("reservation slurm-maint-n1 made".into()),
        action: "Reserve".into(),
        secondary: None,
    };
    recorder
        .publish(
            &event,
            &kube::Resource::object_ref(&nm, &ApiResource::erase::<NodeMaintenance>(&())),
        )
        .await
        .unwrap();

    let described = kubectl(&path, &["describe", "snm", "n1"], None).await;
    let events = described
        .split("Events:")
        .nth(1)
        .unwrap_or_else(|| panic!("{described}"));
    assert!(!events.trim_start().starts_with("<none>"), "{described}");
    assert!(
        events.contains("Reserved") && events.contains("reservation slurm-maint-n1 made"),
        "{described}"
    );
    assert!(events.contains("slurm-maint.io/controller"), "{described}");
    let listed = kubectl(&path, &["get", "events"], None).await;
    assert!(
        listed.contains("nodemaintenance/n1") && listed.contains("Reserved"),
        "{listed}"
    );
    let got = kubectl(&path, &["get", "snm"], None).await;
    let mut lines = got.lines();
    let header = lines.next().unwrap_or_default();
    let age_at = header.find("AGE").unwrap_or_else(|| panic!("{got}"));
    let age = lines.next().unwrap_or_default()[age_at..].trim();
    assert!(fresh(&json!(age)), "{got}");
    let _ = std::fs::remove_file(&path);
    handle.abort();
}
