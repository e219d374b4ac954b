//! `wkube`: one binary that is the server (control plane + node agent) and the CLI.

mod cli;
mod go_duration;
mod image;
mod join;
mod peer_metrics;
mod server;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wkube",
    version,
    about = "A WebAssembly-native orchestrator that speaks Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a control-plane member with its node agent (a one-member cluster by default).
    Server(server::ServerArgs),
    /// Manage the node's local image store.
    #[command(subcommand)]
    Image(image::ImageCommand),
    #[command(flatten)]
    Kube(cli::KubeCommand),
}

/// Where a server keeps its state unless told otherwise: `/var/lib/wkube` for root (like
/// k3s' `/var/lib/rancher/k3s`), else under the user's data directory.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WKUBE_DATA_DIR") {
        return PathBuf::from(d);
    }
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if root {
        return PathBuf::from("/var/lib/wkube");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/wkube")
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server::run(args),
        Command::Image(cmd) => image::run(cmd),
        // The kubectl-like verbs print errors the way kubectl does, so they own their output.
        Command::Kube(cmd) => return cli::run(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
