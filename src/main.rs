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
}

fn main() -> ExitCode {
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
    }
}
