//! An in-process Kubernetes API server for tests and the demo.
//!
//! It keeps objects in memory and speaks the wire format kube-rs and kubectl expect:
//! `metav1.Status` errors, `XList` lists, newline-delimited watch events and 410 Expired,
//! resource-version conflicts, finalizers, owner-reference garbage collection, status
//! subresources, merge patch and server-side apply, and CRD registration with
//! structural-schema, default, pruning and CEL validation. Where a test can tell, it
//! follows kube-apiserver 1.34 (with kube-controller-manager beside it):
//! - every namespace has a `kube-root-ca.crt` ConfigMap, put back when changed or deleted;
//! - all errors of an object come back in one 422, bracketed as `apierrors.NewInvalid`
//!   writes them, and CEL rules skipped after a blocking OpenAPI error are reported as
//!   "some validation rules were not checked…";
//! - watches send bookmarks as the watch cache does (every minute and 2 s before the
//!   deadline, once the resource moved on), and a watch from "" / "0" or with
//!   `sendInitialEvents` gets the state then a `k8s.io/initial-events-end` bookmark;
//! - Events live in one store behind core `v1` and `events.k8s.io/v1`, so `kubectl
//!   describe` and `kubectl get events` find what the controllers' Recorder writes;
//! - Tables render as the server-side printers do (ages, not timestamps).
//!
//! The conformance tests in `tests.rs` run against it and, with
//! `SLURM_MAINT_E2E_KUBECONFIG`, against a real server.

mod events;
pub mod harness;
mod http;
mod patch;
mod store;
mod table;
mod validate;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use store::State;

/// Handle on one in-memory API server; clones share the same state.
#[derive(Clone)]
pub struct ApiServer {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Requests served: reads (GET, including watches) and writes (everything else).
    reads: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
    /// Writes by `METHOD resource[/subresource]`.
    writes_by: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Default for ApiServer {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiServer {
    /// A server with the built-in kinds (namespaces, secrets, configmaps, events, leases,
    /// CRDs) and the namespaces `default`, `kube-system`, `kube-public` and `kube-node-lease`.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new()),
                reads: Default::default(),
                writes: Default::default(),
                writes_by: Default::default(),
            }),
        }
    }

    /// [`ApiServer::new`] with the given CRDs created (and so their kinds served);
    /// panics on a CRD the server refuses.
    pub fn with_crds(crds: &[CustomResourceDefinition]) -> Self {
        let server = Self::new();
        {
            let mut st = server.lock();
            for crd in crds {
                let body = serde_json::to_value(crd).expect("CRD serialises");
                let kind = st
                    .find_kind("apiextensions.k8s.io", "v1", "customresourcedefinitions")
                    .expect("CRD kind is built in");
                st.create(&kind, None, body, false)
                    .unwrap_or_else(|e| panic!("CRD rejected: {}", e.message));
            }
        }
        server
    }

    /// A client that talks to this server in-process, default namespace `default`.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(http::router(self.clone()), "default")
    }

    /// Serves plain HTTP on `addr` (port 0 picks a free port); returns the bound address
    /// and the serving task.
    pub async fn serve(
        &self,
        addr: SocketAddr,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let router = http::router(self.clone());
        let handle = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "embedded API server stopped");
            }
        });
        Ok((bound, handle))
    }

    /// A kubeconfig for `http://addr`, usable by `kube::Config` and kubectl.
    pub fn kubeconfig_yaml(addr: SocketAddr) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: slurm-maint-embedded
  cluster:
    server: http://{addr}
users:
- name: slurm-maint-embedded
  user: {{}}
contexts:
- name: slurm-maint-embedded
  context:
    cluster: slurm-maint-embedded
    user: slurm-maint-embedded
    namespace: default
current-context: slurm-maint-embedded
preferences: {{}}
"
        )
    }

    /// Requests served so far: (reads, writes); a write is any method but GET and HEAD.
    pub fn request_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.inner.reads.load(Relaxed),
            self.inner.writes.load(Relaxed),
        )
    }

    /// Writes so far by `METHOD resource[/subresource]` (e.g. `PATCH nodemaintenances/status`).
    pub fn writes_by_resource(&self) -> std::collections::BTreeMap<String, u64> {
        self.inner
            .writes_by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn count_request(&self, method: &axum::http::Method, path: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
            self.inner.reads.fetch_add(1, Relaxed);
            return;
        }
        self.inner.writes.fetch_add(1, Relaxed);
        // /api/v1/namespaces/ns/events, /apis/g/v/namespaces/ns/kind/name/status, …
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let at = segs.iter().position(|s| *s == "namespaces");
        let resource = match at {
            Some(i) if segs.len() > i + 2 => segs[i + 2..]
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != 1)
                .map(|(_, s)| *s)
                .collect::<Vec<_>>()
                .join("/"),
            _ => segs
                .get(if segs.first() == Some(&"api") { 2 } else { 3 })
                .copied()
                .unwrap_or("")
                .to_string(),
        };
        *self
            .inner
            .writes_by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(format!("{method} {resource}"))
            .or_default() += 1;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
