//! The agent (`slurm-maint agent`): a small authenticated HTTP service that runs where
//! Slurm's client commands work and is the controllers' only way to Slurm.
//!
//! - Reads are batched: a partition snapshot is three commands whatever its node count, four
//!   when the cached partitions must be read again ([`snapshot`]).
//! - Commands are argv, never a shell; every name is validated ([`validate`]).
//! - Only reservations named `<prefix>-…` and drains whose reason starts with
//!   `slurm-maint: ` are changed; jobs are cancelled only if preemptable when checked.
//! - Every command is logged with its duration and exit code, has a timeout, and is
//!   counted in `/metrics`; Slurm's errors come back with Slurm's own message.
//! - HTTPS with `--tls-cert`/`--tls-key`, and client certificates required with
//!   `--tls-client-ca` ([`tls`]); plain HTTP without them.
//!
//! API (JSON, bearer token on everything but `/healthz`):
//!
//! | | |
//! |---|---|
//! | `GET /v1/partitions/{p}/snapshot` | nodes, active jobs, reservations, partitions |
//! | `POST /v1/reservations` | create (name must carry the owned prefix) |
//! | `PATCH`/`DELETE /v1/reservations/{name}` | move, resize or delete ours |
//! | `POST /v1/nodes/{node}/drain` `{reason}` | drain (not over someone else's drain) |
//! | `POST /v1/nodes/{node}/resume` | clear our drain, never other people's, never a node Slurm took down |
//! | `POST /v1/nodes/{node}/clear-reason` | retire our old reason on a node back in service |
//! | `POST /v1/nodes/{node}/reboot` `{reason, nextState}` | `scontrol reboot ASAP` or the site command |
//! | `POST /v1/nodes/{node}/health` | `{healthy, message}` |
//! | `POST /v1/nodes/{node}/checks/{name}` `{fault}` | one check of the checks file ([`checks`]) |
//! | `POST /v1/jobs/{id}/cancel` | only a preemptable job |
//! | `GET /healthz`, `GET /metrics` | `scontrol ping`; Prometheus text |

pub mod api;
pub mod checks;
pub mod commands;
pub mod metrics;
pub mod runner;
pub mod server;
pub mod snapshot;
pub mod tls;
pub mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;

pub use runner::{ProcessRunner, Runner, SlurmError};
pub use server::{Config, router};

/// Environment variable holding the bearer token when `--token-file` is not given.
pub const TOKEN_ENV: &str = "SLURM_MAINT_AGENT_TOKEN";

/// `slurm-maint agent` options.
#[derive(Clone, Debug, clap::Args)]
pub struct AgentArgs {
    /// Address to listen on. The default only serves this host; in a pod (Slinky sidecar,
    /// Soperator login pod) use 0.0.0.0:8080.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// File holding the bearer token (surrounding whitespace ignored). Without it the
    /// token is read from $SLURM_MAINT_AGENT_TOKEN.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Timeout of every command, e.g. 30s or 2m; commands are killed when it expires.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub command_timeout: Duration,
    /// Reservations named `<prefix>-…` belong to this operator.
    #[arg(long, default_value = "slurm-maint")]
    pub reservation_prefix: String,
    /// Drain reasons starting with this belong to this operator.
    #[arg(long, default_value = "slurm-maint: ")]
    pub reason_prefix: String,
    /// Site reboot command instead of `scontrol reboot`, split on whitespace into argv
    /// (no shell); `{node}` is replaced by the node name,
    /// e.g. "/usr/local/sbin/ipmi-reboot {node}".
    #[arg(long)]
    pub reboot_command: Option<String>,
    /// Health-check command, split on whitespace into argv (no shell); `{node}` is
    /// replaced by the node name and exit 0 means healthy,
    /// e.g. "/usr/local/bin/check {node}".
    #[arg(long)]
    pub health_command: Option<String>,
    /// Named health checks (YAML or JSON, see `agent::checks`), run by
    /// `POST /v1/nodes/{node}/checks/{name}`; the controller can only name them.
    /// `--health-command` is also the check `default` unless this file defines one.
    #[arg(long)]
    pub checks_file: Option<PathBuf>,
    /// How long `scontrol show partition` output is reused by snapshots, e.g. 5m; 0 reads
    /// it every time. It is read early when the cache cannot vouch for it (see
    /// `agent::snapshot`).
    #[arg(long, default_value = "5m", value_parser = parse_ttl)]
    pub partition_cache_ttl: Duration,
    /// A client must send a request's headers, and then its body, within this time, e.g.
    /// 10s: slower ones are disconnected (headers) or answered 408 (body), and hold
    /// nothing but their own connection.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Jobs with this QOS are preemptable (repeatable).
    #[arg(long = "preemptable-qos")]
    pub preemptable_qos: Vec<String>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key). Without it the
    /// agent serves plain HTTP.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: clients must present a certificate signed by one of these CAs
    /// (needs --tls-cert).
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("not a duration (e.g. 30s, 2m): {e}"))?;
    Duration::try_from(d)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("duration {s} must be positive"))
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("not a duration (e.g. 5m, 0s): {e}"))?;
    Duration::try_from(d).map_err(|_| format!("duration {s} must not be negative"))
}

/// The agent cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no token: give --token-file or set ${TOKEN_ENV}")]
    NoToken,
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token is empty")]
    EmptyToken,
    #[error("invalid {option}: {message}")]
    Option {
        option: &'static str,
        message: String,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl AgentArgs {
    /// The agent configuration; the token comes from `token_env` when no file is given.
    pub fn config(&self, token_env: Option<String>) -> Result<Config, AgentError> {
        let token = match &self.token_file {
            Some(path) => {
                std::fs::read_to_string(path).map_err(|source| AgentError::TokenFile {
                    path: path.clone(),
                    source,
                })?
            }
            None => token_env.ok_or(AgentError::NoToken)?,
        };
        let token = token.trim().to_string();
        if token.is_empty() {
            return Err(AgentError::EmptyToken);
        }
        let option = |option, message: String| AgentError::Option { option, message };
        validate::reservation_name(&self.reservation_prefix)
            .map_err(|e| option("--reservation-prefix", e.to_string()))?;
        validate::reason(&self.reason_prefix)
            .map_err(|e| option("--reason-prefix", e.to_string()))?;
        let template = |name, value: &Option<String>| match value {
            None => Ok(None),
            Some(t) => commands::parse_template(t)
                .map(Some)
                .ok_or_else(|| option(name, "empty command".into())),
        };
        let health_command = template("--health-command", &self.health_command)?;
        let mut checks = match &self.checks_file {
            Some(path) => checks::Checks::load(path, self.command_timeout)
                .map_err(|e| option("--checks-file", e))?,
            None => checks::Checks::default(),
        };
        if let Some(argv) = &health_command {
            checks.add_if_absent(checks::Check::simple(
                checks::DEFAULT_CHECK,
                argv.clone(),
                self.command_timeout,
            ));
        }
        Ok(Config {
            token,
            reservation_prefix: self.reservation_prefix.clone(),
            reason_prefix: self.reason_prefix.clone(),
            reboot_command: template("--reboot-command", &self.reboot_command)?,
            health_command,
            checks: Arc::new(checks),
            preemptable_qos: self.preemptable_qos.clone(),
            partition_cache_ttl: self.partition_cache_ttl,
            tz: TimeZone::system(),
            request_timeout: self.request_timeout,
        })
    }

    /// The TLS server configuration, or `None` to serve plain HTTP.
    pub fn tls_config(&self) -> Result<Option<Arc<rustls::ServerConfig>>, AgentError> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) if self.tls_client_ca.is_some() => Err(AgentError::Tls(
                "--tls-client-ca needs --tls-cert and --tls-key".into(),
            )),
            (None, None) => Ok(None),
            (Some(_), None) => Err(AgentError::Tls(
                "--tls-cert needs --tls-key (give both or neither)".into(),
            )),
            (None, Some(_)) => Err(AgentError::Tls(
                "--tls-key needs --tls-cert (give both or neither)".into(),
            )),
            (Some(cert), Some(key)) => tls::server_config(cert, key, self.tls_client_ca.as_deref())
                .map(Some)
                .map_err(AgentError::Tls),
        }
    }
}

/// Serve the agent until SIGINT or SIGTERM.
pub async fn serve(args: AgentArgs) -> Result<(), AgentError> {
    let config = args.config(std::env::var(TOKEN_ENV).ok())?;
    let tls = args.tls_config()?;
    let runner = Arc::new(ProcessRunner::new(args.command_timeout));
    let app = router(config, runner);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| AgentError::Listen {
            addr: args.listen,
            source,
        })?;
    tracing::info!(
        listen = %args.listen,
        tls = tls.is_some(),
        client_certificates = args.tls_client_ca.is_some(),
        timeout_s = args.command_timeout.as_secs_f64(),
        request_timeout_s = args.request_timeout.as_secs_f64(),
        "agent listening"
    );
    tls::serve_http(listener, tls, app, args.request_timeout, shutdown()).await;
    Ok(())
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn args(argv: &[&str]) -> AgentArgs {
        Cli::try_parse_from(std::iter::once("agent").chain(argv.iter().copied()))
            .unwrap()
            .agent
    }

    #[test]
    fn defaults_are_safe() {
        let a = args(&[]);
        assert_eq!(a.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(a.command_timeout, Duration::from_secs(30));
        assert!(matches!(a.config(None), Err(AgentError::NoToken)));
        assert!(matches!(
            a.config(Some("  \n".into())),
            Err(AgentError::EmptyToken)
        ));
        let c = a.config(Some("tok\n".into())).unwrap();
        assert_eq!(c.token, "tok");
        assert_eq!(c.reservation_prefix, "slurm-maint");
        assert!(c.health_command.is_none());
        assert_eq!(c.partition_cache_ttl, Duration::from_secs(300));
    }

    #[test]
    fn partition_cache_ttl() {
        for (v, secs) in [("0", 0), ("0s", 0), ("90s", 90), ("2m", 120)] {
            let a = args(&["--partition-cache-ttl", v]);
            assert_eq!(a.partition_cache_ttl, Duration::from_secs(secs), "{v}");
        }
        for bad in ["-5s", "soon"] {
            assert!(
                Cli::try_parse_from(["agent", "--partition-cache-ttl", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn options() {
        let a = args(&[
            "--listen",
            "0.0.0.0:9000",
            "--command-timeout",
            "2m",
            "--health-command",
            "/usr/local/bin/check  {node}",
            "--preemptable-qos",
            "spot",
            "--preemptable-qos",
            "scavenger",
        ]);
        assert_eq!(a.command_timeout, Duration::from_secs(120));
        let c = a.config(Some("t".into())).unwrap();
        assert_eq!(
            c.health_command.unwrap(),
            ["/usr/local/bin/check", "{node}"]
        );
        assert_eq!(c.preemptable_qos, ["spot", "scavenger"]);
        let bad = args(&["--reservation-prefix", "x;y"]);
        assert!(bad.config(Some("t".into())).is_err());
        let missing = args(&["--token-file", "/nonexistent/token"]);
        assert!(matches!(
            missing.config(None),
            Err(AgentError::TokenFile { .. })
        ));
        assert!(a.tls_config().unwrap().is_none(), "plain HTTP by default");
        for bad in ["0s", "soon", "-5s"] {
            assert!(
                Cli::try_parse_from(["agent", "--command-timeout", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn tls_cert_and_key_come_together() {
        let err = Cli::try_parse_from(["agent", "--tls-cert", "/etc/agent/tls.crt"])
            .err()
            .expect("--tls-cert alone is refused");
        assert!(err.to_string().contains("--tls-key"), "{err}");
        assert!(Cli::try_parse_from(["agent", "--tls-key", "k.pem"]).is_err());
        assert!(Cli::try_parse_from(["agent", "--tls-client-ca", "ca.pem"]).is_err());

        // Built in code rather than parsed, the same mistake is just as clear.
        let mut a = args(&[]);
        a.tls_cert = Some("/etc/agent/tls.crt".into());
        let err = a.tls_config().unwrap_err().to_string();
        assert_eq!(
            err,
            "TLS: --tls-cert needs --tls-key (give both or neither)"
        );
        a.tls_cert = None;
        a.tls_client_ca = Some("ca.pem".into());
        assert!(
            a.tls_config()
                .unwrap_err()
                .to_string()
                .contains("--tls-client-ca")
        );

        let missing = args(&[
            "--tls-cert",
            "/nonexistent/c.pem",
            "--tls-key",
            "/nonexistent/k.pem",
        ]);
        let err = missing.tls_config().unwrap_err().to_string();
        assert!(
            err.contains("--tls-cert: cannot read /nonexistent/c.pem"),
            "{err}"
        );
    }
}
