//! A namespace to run an end-to-end test in: on a real cluster when
//! `SLURM_MAINT_E2E_KUBECONFIG` names a kubeconfig, otherwise on an embedded [`ApiServer`].

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::ApiServer;

/// Environment variable naming the kubeconfig of a real cluster to test against.
pub const KUBECONFIG_ENV: &str = "SLURM_MAINT_E2E_KUBECONFIG";

/// Field manager the harness applies CRDs with.
pub const FIELD_MANAGER: &str = "slurm-maint-e2e";

/// A cluster with the project's CRDs established and a fresh namespace.
pub struct TestCluster {
    pub client: kube::Client,
    pub namespace: String,
    server: Option<ApiServer>,
}

impl TestCluster {
    /// Connects (or starts an embedded server), applies the CRDs, waits until they are
    /// Established and creates the namespace `<name_hint>-<random suffix>`.
    pub async fn start(name_hint: &str) -> TestCluster {
        let (client, server) = match std::env::var(KUBECONFIG_ENV) {
            Ok(path) if !path.is_empty() => {
                let kubeconfig = Kubeconfig::read_from(&path)
                    .unwrap_or_else(|e| panic!("reading {KUBECONFIG_ENV}={path}: {e}"));
                let config =
                    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                        .await
                        .unwrap_or_else(|e| panic!("kubeconfig {path}: {e}"));
                let client = kube::Client::try_from(config).expect("client from kubeconfig");
                (client, None)
            }
            _ => {
                let server = ApiServer::new();
                (server.client(), Some(server))
            }
        };
        apply_crds(&client).await;
        let namespace = format!("{}-{}", sanitize(name_hint), super::store::random_suffix(6));
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": namespace, "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER}}
        }))
        .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {namespace}: {e}"));
        TestCluster {
            client,
            namespace,
            server,
        }
    }

    /// True when running against a real cluster.
    pub fn is_real(&self) -> bool {
        self.server.is_none()
    }

    /// The embedded server, when there is one.
    pub fn embedded(&self) -> Option<&ApiServer> {
        self.server.as_ref()
    }

    /// Deletes the namespace in the background without waiting for it to vanish. The
    /// policies' finalizers go first: the test's controller, which would remove them, is
    /// gone, and a finalizer nobody removes holds the namespace in Terminating for good.
    pub async fn cleanup(self) {
        let policies =
            Api::<crate::api::MaintenancePolicy>::namespaced(self.client.clone(), &self.namespace);
        let unfinalize = serde_json::json!({"metadata": {"finalizers": null}});
        for p in policies
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let Some(name) = p.metadata.name.as_deref() else {
                continue;
            };
            if p.metadata.finalizers.is_some_and(|f| !f.is_empty())
                && let Err(e) = policies
                    .patch(name, &PatchParams::default(), &Patch::Merge(&unfinalize))
                    .await
            {
                tracing::warn!(namespace = %self.namespace, policy = name, error = %e, "removing the finalizer failed");
            }
        }
        let api = Api::<Namespace>::all(self.client.clone());
        if let Err(e) = api
            .delete(&self.namespace, &DeleteParams::background())
            .await
        {
            tracing::warn!(namespace = %self.namespace, error = %e, "namespace cleanup failed");
        }
    }
}

async fn apply_crds(client: &kube::Client) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let version = client
        .apiserver_version()
        .await
        .unwrap_or_else(|e| panic!("reading the server version: {e}"));
    let minor: u32 = version
        .minor
        .trim_end_matches('+')
        .parse()
        .unwrap_or(u32::MAX);
    let crds = crate::api::crds();
    for crd in &crds {
        let name = crd.metadata.name.clone().expect("CRD name");
        let mut body = serde_json::to_value(crd).expect("CRD serialises");
        if minor < 23 {
            strip_validations(&mut body);
        }
        api.patch(&name, &params, &Patch::Apply(&body))
            .await
            .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for crd in &crds {
        let name = crd.metadata.name.clone().expect("CRD name");
        loop {
            let current = api.get(&name).await.ok();
            let established = current
                .and_then(|c| c.status)
                .and_then(|s| s.conditions)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "CRD {name} not Established within 60s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Servers before 1.23 do not know `x-kubernetes-validations` and refuse it in an apply.
fn strip_validations(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("x-kubernetes-validations");
            m.values_mut().for_each(strip_validations);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_validations),
        _ => {}
    }
}

fn sanitize(hint: &str) -> String {
    let mut s: String = hint
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(50);
    let s = s.trim_matches('-').to_string();
    if s.is_empty() { "e2e".into() } else { s }
}
