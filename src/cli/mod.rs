//! The kubectl-like verbs of `wkube` (`apply`, `get`, `describe`, `delete`, `logs`,
//! `exec`, `create`, `version`). They talk to the Kubernetes REST API through the `kube` client,
//! like any other client would, and print what kubectl prints so that users and scripts can
//! switch between the two.

mod apply;
mod channels;
mod client;
mod cluster;
mod create;
mod delete;
mod describe;
mod discovery;
mod exec;
mod get;
mod logs;
mod manifest;
mod printer;
mod secrets;
mod terminal;
mod version;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use thiserror::Error;

use client::{ClientError, Cluster};

#[derive(Subcommand)]
pub enum KubeCommand {
    /// Create or update objects from manifests (client-side apply, like `kubectl apply`).
    Apply(apply::ApplyArgs),
    /// List objects as tables, or print them as YAML, JSON or names.
    Get(get::GetArgs),
    /// Show an object in detail, with its events.
    Describe(describe::DescribeArgs),
    /// Delete objects by name, by label, all of a kind, or those in manifests.
    Delete(delete::DeleteArgs),
    /// Print (or follow) a container's log.
    Logs(logs::LogsArgs),
    /// Run a command in a container, with its stdin (`-i`) and a terminal (`-t`).
    Exec(exec::ExecArgs),
    /// Create a ConfigMap or a Secret from literals and files.
    #[command(subcommand)]
    Create(create::CreateCommand),
    /// Print the client's and the server's versions.
    Version(version::VersionArgs),
    /// The control plane's members.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Secrets at rest: rotate the data key, check that no plaintext is stored.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
}

/// How a verb reaches the cluster.
#[derive(Args)]
pub struct Connection {
    /// The namespace; default: the kubeconfig context's, else `default`.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// The kubeconfig; default: $KUBECONFIG, else ~/.kube/config, else the one a local
    /// `wkube server` wrote into its data directory.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

impl Connection {
    async fn connect(&self) -> Result<Cluster, ClientError> {
        Cluster::connect(self.kubeconfig.as_deref()).await
    }

    /// `-n`, else the kubeconfig context's namespace.
    fn namespace_or(&self, cluster: &Cluster) -> String {
        self.namespace
            .clone()
            .unwrap_or_else(|| cluster.default_namespace.clone())
    }
}

/// The errors of a verb have been printed already (a verb that goes on after an error, like
/// kubectl does for each of several objects); only the exit code is left to set.
#[derive(Debug, Error)]
#[error("errors were reported")]
struct Reported;

pub fn run(command: KubeCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            KubeCommand::Apply(args) => apply::run(args).await,
            KubeCommand::Get(args) => get::run(args).await,
            KubeCommand::Describe(args) => describe::run(args).await,
            KubeCommand::Delete(args) => delete::run(args).await,
            KubeCommand::Logs(args) => logs::run(args).await,
            KubeCommand::Exec(args) => exec::run(args).await,
            KubeCommand::Create(cmd) => create::run(cmd).await,
            KubeCommand::Version(args) => version::run(args).await,
            KubeCommand::Cluster(cmd) => cluster::run(cmd).await,
            KubeCommand::Secrets(cmd) => secrets::run(cmd).await,
        }
    });
    // Without waiting for blocking reads of stdin (`exec -i`), which cannot be cancelled.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Reported>() => ExitCode::FAILURE,
        Err(e) => match e.downcast_ref::<exec::ExecError>() {
            // `exec` ends with the remote command's code, as kubectl does.
            Some(exited @ exec::ExecError::Exited(code)) => {
                eprintln!("{exited}");
                ExitCode::from(*code)
            }
            _ => {
                eprintln!("{}", render(&e));
                ExitCode::FAILURE
            }
        },
    }
}

/// One error as kubectl prints it: `Error from server (Reason): ...` for the server's own
/// answers, `error: ...` for everything else.
fn render(e: &anyhow::Error) -> String {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Server(s)) => s.to_string(),
        _ => format!("error: {e:#}"),
    }
}
