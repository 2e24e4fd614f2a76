//! `slurm-maint controller`: the controllers against the cluster of the kubeconfig (or
//! the in-cluster service account), with leader election and a metrics/health endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use futures::FutureExt;
use futures::future::Shared;

use super::{AgentConnector, Context, Leadership, LeaseConfig, Pace, leader, wall_clock};

/// Options of `slurm-maint controller`.
#[derive(Clone, Debug, clap::Args)]
pub struct ControllerArgs {
    /// Watch only this namespace (all namespaces otherwise).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Namespace of the leader-election Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long)]
    pub lease_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "slurm-maint-controller")]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: $POD_NAME, else host name and pid).
    #[arg(long)]
    pub identity: Option<String>,
    /// Act without a Lease (one replica only!).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Timeout of one call to an agent, seconds.
    #[arg(long, default_value_t = 30)]
    pub agent_timeout: u64,
    /// PEM CA bundle that `https://` agents' certificates chain to.
    #[arg(long)]
    pub agent_ca: Option<PathBuf>,
    /// PEM client certificate and key for agents that require one.
    #[arg(long)]
    pub agent_client_identity: Option<PathBuf>,
}

fn default_identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "slurm-maint".into());
        format!("{host}-{}", std::process::id())
    })
}

/// SIGTERM or Ctrl-C, shareable.
pub fn shutdown_signal() -> Shared<futures::future::BoxFuture<'static, ()>> {
    async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
    }
    .boxed()
    .shared()
}

/// Serve `/metrics`, `/healthz` and `/readyz` on `addr` until `stop`.
pub async fn serve_metrics(
    addr: SocketAddr,
    ctx: Arc<Context>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = ctx.metrics.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

/// Run the controller until SIGTERM.
pub async fn run(args: ControllerArgs) -> Result<(), String> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    let read = |p: &Option<PathBuf>| -> Result<Option<Vec<u8>>, String> {
        p.as_ref()
            .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
            .transpose()
    };
    let connector = AgentConnector::new(
        client.clone(),
        Duration::from_secs(args.agent_timeout),
        read(&args.agent_ca)?,
        read(&args.agent_client_identity)?,
    );
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let leadership = if args.no_leader_election {
        Leadership::always()
    } else {
        Leadership::default()
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(connector),
        wall_clock(),
        Pace::default(),
        leadership.clone(),
        &identity,
    ));
    let stop = shutdown_signal();
    let metrics = tokio::spawn(serve_metrics(args.metrics_addr, ctx.clone(), stop.clone()));
    let elector = (!args.no_leader_election).then(|| {
        let ns = args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into());
        let cfg = LeaseConfig::new(&ns, &args.lease_name, &identity);
        tokio::spawn(leader::run(client.clone(), cfg, leadership, stop.clone()))
    });
    tracing::info!(%identity, namespace = ?args.namespace, "controller starting");
    super::run(ctx, args.namespace.clone(), stop.clone()).await;
    if let Some(e) = elector {
        let _ = e.await;
    }
    match metrics.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("metrics endpoint {}: {e}", args.metrics_addr)),
        Err(e) => Err(e.to_string()),
    }
}
