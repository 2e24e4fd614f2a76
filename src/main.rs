//! The `slurm-maint` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "slurm-maint",
    version,
    about = "Budgeted maintenance for Slurm clusters, driven from Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as one YAML stream, or write one file each.
    Crds {
        /// Write `<name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Serve the Slurm agent: the authenticated HTTP API the controllers use to reach
    /// Slurm. Runs where Slurm's commands work (slurmctld sidecar, login pod, systemd).
    Agent(Box<slurm_maint::agent::AgentArgs>),
    /// Run the controllers against the cluster of the kubeconfig (or in-cluster).
    Controller(Box<slurm_maint::controller::cli::ControllerArgs>),
    /// Run a whole rolling-reboot campaign on an embedded default: in-process API
    /// server, simulated Slurm partition, the real controllers.
    Demo(slurm_maint::demo::DemoArgs),
    /// Serve an emulator of the OCI Compute (maintenance events, instances), Work
    /// Requests and Identity APIs on loopback, checking request signatures.
    OciEmulator(Box<slurm_maint::oci::emulator::EmulatorArgs>),
    /// Benchmarks: campaign makespan against the optimum and the seed's policy, and the
    /// cost of one reconcile pass at 10 000 nodes.
    Bench(slurm_maint::bench::BenchArgs),
}

/// Log lines on stderr: colours only when stderr is a terminal.
fn init_logging(json: bool, default: &str) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let b = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

/// Log lines into `path` (created anew), without colours: the terminal is the demo's.
fn init_file_logging(path: &std::path::Path, default: &str) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(filter)
        .init();
    Ok(())
}

fn block_on<F: std::future::Future<Output = Result<(), String>>>(f: F) -> ExitCode {
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(f));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // reqwest is built without a crypto provider of its own: ring, as everywhere here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Crds { out_dir: None } => {
            print!("{}", slurm_maint::api::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Crds { out_dir: Some(dir) } => {
            for crd in slurm_maint::api::crds() {
                let path = dir.join(slurm_maint::api::crd_file_name(&crd));
                if let Err(e) = std::fs::write(&path, slurm_maint::api::crd_yaml(&crd)) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Command::Agent(args) => {
            init_logging(true, "info");
            block_on(async move {
                slurm_maint::agent::serve(*args)
                    .await
                    .map_err(|e| e.to_string())
            })
        }
        Command::Controller(args) => {
            init_logging(true, "info");
            block_on(slurm_maint::controller::cli::run(*args))
        }
        Command::OciEmulator(args) => {
            init_logging(false, "info");
            block_on(slurm_maint::oci::emulator::run(*args))
        }
        Command::Bench(args) => match slurm_maint::bench::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Demo(args) => {
            if let Err(e) = init_file_logging(&args.log, "info") {
                eprintln!("error: {}: {e}", args.log.display());
                return ExitCode::FAILURE;
            }
            block_on(async move {
                let report = slurm_maint::demo::run(args).await?;
                report.failure().map_or(Ok(()), Err)
            })
        }
    }
}
