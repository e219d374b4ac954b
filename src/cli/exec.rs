//! `wkube exec`: runs a command in a container through the pod's `exec` subresource, over
//! WebSocket with Kubernetes' channel protocol ([`super::channels`]).
//!
//! How the end of stdin (`-i` without `-t`) is told, or not: see [`super::channels`].

use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::AttachParams;
use thiserror::Error;

use super::channels;
use super::terminal::{self, RawMode};
use super::Connection;

/// The annotation that names the container `exec`, `logs` and `attach` default to.
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

#[derive(Args)]
pub struct ExecArgs {
    /// The pod.
    pod: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
    /// The container; default: the pod's `kubectl.kubernetes.io/default-container`, else
    /// its first.
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Pass stdin to the container.
    #[arg(short = 'i', long)]
    stdin: bool,
    /// Stdin is a TTY: the local terminal in raw mode drives a remote one.
    #[arg(short = 't', long)]
    tty: bool,
    /// Only print output from the remote session.
    #[arg(short = 'q', long)]
    quiet: bool,
    #[command(flatten)]
    conn: Connection,
}

#[derive(Debug, Error)]
pub enum ExecError {
    #[error("cannot exec into a container in a completed pod; current phase is {0}")]
    Completed(String),
    #[error("pod {0} does not have a container")]
    NoContainer(String),
    /// The remote command ended with this code; kubectl's words, and the verb's exit code.
    #[error("command terminated with exit code {0}")]
    Exited(u8),
    /// The server's `Status` for a session that failed other than by an exit code.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Channels(#[from] channels::ChannelError),
    #[error(transparent)]
    Terminal(#[from] terminal::TerminalError),
}

pub async fn run(args: ExecArgs) -> anyhow::Result<()> {
    let cluster = args.conn.connect().await?;
    let ns = args.conn.namespace_or(&cluster);
    let pod = cluster
        .pods(&ns)
        .get(&args.pod)
        .await
        .map_err(super::ClientError::from)?;
    if let Some(phase @ ("Succeeded" | "Failed")) =
        pod.status.as_ref().and_then(|s| s.phase.as_deref())
    {
        return Err(ExecError::Completed(phase.to_string()).into());
    }
    let container = match args.container {
        Some(c) => c,
        None => {
            let (container, notice) = default_container(&pod)?;
            if let (Some(notice), false) = (notice, args.quiet) {
                eprintln!("{notice}");
            }
            container
        }
    };
    let tty = args.tty && tty_usable(args.quiet);
    let params = AttachParams {
        container: Some(container),
        stdin: args.stdin,
        stdout: true,
        stderr: !tty,
        tty,
        ..AttachParams::default()
    };
    let mut request = kube::core::Request::new(format!("/api/v1/namespaces/{ns}/pods"))
        .exec(&args.pod, args.command, &params)
        .map_err(|e| super::ClientError::from(kube::Error::BuildRequest(e)))?;
    request.extensions_mut().insert("exec");
    let connection = cluster.upgrade(request).await?;
    let stops = channels::Stops::new().map_err(channels::ChannelError::from)?;
    let raw = if tty && args.stdin {
        Some(RawMode::enter()?)
    } else {
        None
    };
    let local = channels::Local {
        stdin: args.stdin.then(tokio::io::stdin),
        stdout: std::io::stdout(),
        stderr: std::io::stderr(),
        terminal: tty,
    };
    let status = channels::run(connection, local, stops).await;
    drop(raw);
    let status = status.map_err(ExecError::from)?;
    // kubectl too takes a stream that ends without a `Status` for a success.
    status.map_or(Ok(()), outcome).map_err(Into::into)
}

/// kubectl's choice of container when none is named, and its notice for stderr when the
/// pod has others.
fn default_container(pod: &Pod) -> Result<(String, Option<String>), ExecError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod
        .spec
        .as_ref()
        .ok_or(ExecError::NoContainer(name.clone()))?;
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .filter(|a| spec.containers.iter().any(|c| &c.name == *a));
    if let Some(annotated) = annotated {
        return Ok((annotated.clone(), None));
    }
    let first = spec
        .containers
        .first()
        .ok_or(ExecError::NoContainer(name))?
        .name
        .clone();
    let init = spec.init_containers.iter().flatten();
    let ephemeral = spec.ephemeral_containers.iter().flatten();
    let all: Vec<String> = spec
        .containers
        .iter()
        .map(|c| c.name.clone())
        .chain(init.map(|c| format!("{} (init)", c.name)))
        .chain(ephemeral.map(|c| format!("{} (ephem)", c.name)))
        .collect();
    let notice = (all.len() > 1)
        .then(|| format!("Defaulted container {first:?} out of: {}", all.join(", ")));
    Ok((first, notice))
}

/// `-t` needs a terminal on stdin; without one kubectl warns and goes on without a TTY.
fn tty_usable(quiet: bool) -> bool {
    let usable = terminal::stdin_is_terminal();
    if !usable && !quiet {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    usable
}

/// The session's final `Status`: success, the command's exit code, or the runtime's error.
fn outcome(status: Status) -> Result<(), ExecError> {
    if status.status.as_deref() == Some("Success") {
        return Ok(());
    }
    let message = status.message.unwrap_or_default();
    if status.reason.as_deref() != Some("NonZeroExitCode") {
        return Err(ExecError::Failed(message));
    }
    let code = status
        .details
        .and_then(|d| d.causes)
        .into_iter()
        .flatten()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message?.parse::<i64>().ok());
    match code {
        // Codes beyond a byte are what a shell would show of them.
        Some(code) => Err(ExecError::Exited((code & 0xff) as u8)),
        None => Err(ExecError::Failed(message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_default_container_is_kubectls() {
        let c = |name: &str| serde_json::json!({"name": name});
        let cases = [
            (
                serde_json::json!({"containers": [c("only")]}),
                None,
                "only",
                None,
            ),
            (
                serde_json::json!({"containers": [c("a"), c("b")], "initContainers": [c("i")]}),
                None,
                "a",
                Some("Defaulted container \"a\" out of: a, b, i (init)"),
            ),
            (
                serde_json::json!({"containers": [c("a"), c("b")]}),
                Some("b"),
                "b",
                None,
            ),
            // An annotation naming no container is ignored, as kubectl does.
            (
                serde_json::json!({"containers": [c("a"), c("b")]}),
                Some("nope"),
                "a",
                Some("Defaulted container \"a\" out of: a, b"),
            ),
        ];
        for (spec, annotation, want, notice) in cases {
            let annotations = annotation
                .map(|a| serde_json::json!({DEFAULT_CONTAINER_ANNOTATION: a}))
                .unwrap_or_default();
            let p = pod(serde_json::json!({
                "metadata": {"name": "p", "annotations": annotations},
                "spec": spec,
            }));
            let (got, said) = default_container(&p).unwrap();
            assert_eq!((got.as_str(), said.as_deref()), (want, notice), "{spec}");
        }
    }

    #[test]
    fn the_status_decides_the_outcome() {
        let status = |json: serde_json::Value| outcome(serde_json::from_value(json).unwrap());
        assert!(status(serde_json::json!({"status": "Success"})).is_ok());
        let exited = status(serde_json::json!({
            "status": "Failure",
            "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
        }));
        assert!(matches!(exited, Err(ExecError::Exited(3))), "{exited:?}");
        let failed = status(serde_json::json!({
            "status": "Failure",
            "reason": "InternalError",
            "message": "executable file not found in $PATH",
        }));
        assert_eq!(
            failed.unwrap_err().to_string(),
            "executable file not found in $PATH"
        );
    }
}
