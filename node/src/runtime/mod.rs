//! The runtime seam: what the pod worker needs from something that runs containers.
//!
//! Implementations: [`wasm::WasmRuntime`] (WASI components in-process, wasmtime),
//! [`fake::FakeRuntime`] (scripted, for tests), and [`oci::OciRuntime`] (containerd), which
//! needs a pod sandbox and so is driven by the pod worker directly rather than through
//! [`Runtime`]; both hand back the same [`RunningContainer`].
//!
//! Contract shared by every implementation:
//! - [`Runtime::start`] returns once the container runs; its output goes to the
//!   [`LogWriter`] of the [`ContainerConfig`], which the runtime closes when the
//!   container exits (so a final unterminated line is recorded).
//! - The returned [`RunningContainer`] is the only handle on the run. It can be
//!   cloned; when the last clone is dropped, the container is killed. Nothing runs
//!   unowned.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::images::ResolvedImage;
use crate::logs::LogWriter;

pub mod fake;
pub mod guest_meter;
pub mod oci;
pub mod wasm;

/// Exit code reported for a container that we stopped, as for SIGKILL (128 + 9).
pub const KILLED_EXIT_CODE: i32 = 137;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("image {reference} is not a wasm component artifact")]
    NotWasm { reference: String },
    #[error("reading layer {digest}: {source}")]
    Layer {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {digest} does not match its digest (found {actual})")]
    DigestMismatch { digest: String, actual: String },
    #[error("compiling {digest}: {message}")]
    Compile { digest: String, message: String },
    #[error("{digest} is not a runnable WASI command: {message}")]
    Link { digest: String, message: String },
    #[error("instantiating {id}: {message}")]
    Instantiate { id: String, message: String },
    #[error("engine: {0}")]
    Engine(String),
    #[error("compile cache {path}: {source}")]
    Cache {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mounting {path} at {guest_path}: {message}")]
    Mount {
        path: std::path::PathBuf,
        guest_path: String,
        message: String,
    },
    #[error("{0}")]
    Other(String),
}

pub struct ContainerConfig {
    /// Unique per container run, e.g. `<pod uid>/<container>/<restart>`.
    pub id: String,
    /// The uid of the pod the container belongs to, and the container's name in its spec:
    /// whose usage the runtime measures (`kubectl top`).
    pub pod_uid: String,
    pub name: String,
    /// `argv[0]` is the program name (the container name when there is no command).
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Receives stdout and stderr; closed by the runtime at exit.
    pub log: LogWriter,
    /// The pod's volumes this container mounts; the guest sees these and nothing else of
    /// the node's filesystem.
    pub mounts: Vec<Mount>,
    /// Whether the guest may open sockets: only when it runs in its pod's own network
    /// namespace (see [`crate::netns`]), never in the node's.
    pub network: bool,
    /// `resources.limits.memory` in bytes: a guest that would grow past it is killed and
    /// reported `OOMKilled`.
    pub memory_limit: Option<u64>,
}

/// What a running container has used so far, as its runtime measures it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    /// The container run, unique per restart: its counters start from zero.
    pub id: String,
    pub pod_uid: String,
    /// The container's name in the pod spec.
    pub name: String,
    /// CPU time consumed since it started.
    pub cpu_ns: u64,
    /// Its memory working set now.
    pub memory_bytes: u64,
}

/// A volume as a container sees it at `guest_path`.
#[derive(Clone)]
pub struct Mount {
    pub guest_path: String,
    pub source: MountSource,
}

#[derive(Clone)]
pub enum MountSource {
    /// A real directory of the node (emptyDir, hostPath).
    Host {
        path: std::path::PathBuf,
        read_only: bool,
    },
    /// A directory served from memory that follows updates (ConfigMap, Secret,
    /// downwardAPI, projected): see [`crate::vfs`].
    Virtual(crate::vfs::Content),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Exited with code 0.
    Completed,
    /// Exited non-zero, trapped, or failed to run.
    Error,
    /// Stopped by [`RunningContainer::stop`] (or by dropping every handle).
    Killed,
    /// Killed by the kernel for going over its memory limit.
    OomKilled,
}

impl ExitReason {
    /// The `reason` Kubernetes shows in `state.terminated`.
    pub fn as_k8s_reason(self) -> &'static str {
        match self {
            ExitReason::Completed => "Completed",
            ExitReason::Error => "Error",
            ExitReason::Killed => "Error",
            ExitReason::OomKilled => "OOMKilled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
    pub reason: ExitReason,
    /// Why it failed, when the runtime knows better than the exit code (a trap).
    pub message: Option<String>,
    /// Added beyond the first sketch of the seam: `state.terminated.finishedAt`
    /// must be the exit time, not the time the pod worker got around to noticing.
    pub finished_at: DateTime<Utc>,
}

impl ExitStatus {
    pub fn exited(code: i32) -> Self {
        ExitStatus {
            code,
            reason: if code == 0 {
                ExitReason::Completed
            } else {
                ExitReason::Error
            },
            message: None,
            finished_at: Utc::now(),
        }
    }

    pub fn killed() -> Self {
        ExitStatus {
            code: KILLED_EXIT_CODE,
            reason: ExitReason::Killed,
            message: None,
            finished_at: Utc::now(),
        }
    }

    /// Killed for going over its memory limit: 137, as the OOM killer's SIGKILL shows.
    pub fn oom_killed() -> Self {
        ExitStatus {
            code: KILLED_EXIT_CODE,
            reason: ExitReason::OomKilled,
            message: None,
            finished_at: Utc::now(),
        }
    }

    pub fn error(code: i32, message: impl Into<String>) -> Self {
        ExitStatus {
            code,
            reason: ExitReason::Error,
            message: Some(message.into()),
            finished_at: Utc::now(),
        }
    }
}

pub trait Runtime: Send + Sync + 'static {
    /// Makes the image runnable (compiles it, or loads it from a cache); cheap when
    /// it already is. The pod worker may call it ahead of `start` to report
    /// image-preparation errors (and time) separately.
    fn prepare<'a>(&'a self, image: &'a ResolvedImage) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Starts a container; returns once it is running. Prepares the image first if
    /// needed. Errors here mean the container never ran (nothing was logged by it).
    fn start<'a>(
        &'a self,
        image: &'a ResolvedImage,
        config: ContainerConfig,
    ) -> BoxFuture<'a, Result<RunningContainer, RuntimeError>>;
}

/// A stop request: `Some(grace)` once [`RunningContainer::stop`] is called.
pub type StopRequest = Option<Duration>;

/// Handle on one running container. Cloning is cheap; dropping the last clone
/// kills the container (see the module docs).
#[derive(Clone)]
pub struct RunningContainer {
    id: Arc<str>,
    started_at: DateTime<Utc>,
    exit: watch::Receiver<Option<ExitStatus>>,
    stop: Arc<watch::Sender<StopRequest>>,
}

impl std::fmt::Debug for RunningContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningContainer")
            .field("id", &self.id)
            .field("started_at", &self.started_at)
            .field("exit", &*self.exit.borrow())
            .finish()
    }
}

/// The runtime's side of a [`RunningContainer`]: it learns of stop requests here
/// and reports the exit status through it.
pub struct ContainerTask {
    exit: watch::Sender<Option<ExitStatus>>,
    stop: watch::Receiver<StopRequest>,
}

impl ContainerTask {
    /// Resolves with the grace period when a stop is requested, or with
    /// `Duration::ZERO` once every [`RunningContainer`] handle is gone.
    pub async fn stop_requested(&mut self) -> Duration {
        loop {
            if let Some(grace) = *self.stop.borrow_and_update() {
                return grace;
            }
            if self.stop.changed().await.is_err() {
                return Duration::ZERO;
            }
        }
    }

    /// Publishes the exit status; waiters of every handle wake up.
    pub fn exited(self, status: ExitStatus) {
        self.exit.send_replace(Some(status));
    }
}

impl RunningContainer {
    /// Creates the pair of handles for a container run that started at `started_at`.
    pub fn new(id: impl Into<Arc<str>>, started_at: DateTime<Utc>) -> (Self, ContainerTask) {
        let (exit_tx, exit_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = watch::channel(None);
        let handle = RunningContainer {
            id: id.into(),
            started_at,
            exit: exit_rx,
            stop: Arc::new(stop_tx),
        };
        let task = ContainerTask {
            exit: exit_tx,
            stop: stop_rx,
        };
        (handle, task)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Resolves when the container has exited. If the runtime lost the container
    /// without reporting (its task panicked), reports an error status.
    pub async fn wait(&mut self) -> ExitStatus {
        match self.exit.wait_for(Option::is_some).await {
            Ok(status) => status.clone().expect("waited for Some"),
            Err(_) => ExitStatus::error(
                1,
                format!("runtime lost container {} without an exit status", self.id),
            ),
        }
    }

    /// The exit status if the container has exited.
    pub fn try_status(&self) -> Option<ExitStatus> {
        self.exit.borrow().clone()
    }

    /// Asks the container to stop; after `grace` it is killed for sure. Idempotent:
    /// the first request's grace period counts. Returns immediately; use
    /// [`wait`](Self::wait) for the exit.
    ///
    /// A wasm guest has no signal handlers, so [`wasm::WasmRuntime`] interrupts it
    /// at once whatever the grace period (exit code 137, reason `Killed`).
    pub fn stop(&self, grace: Duration) {
        self.stop.send_if_modified(|req| {
            if req.is_none() {
                *req = Some(grace);
                true
            } else {
                false
            }
        });
    }

    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn handle_reports_exit_to_every_clone() {
        let (mut a, task) = RunningContainer::new("c", Utc::now());
        let mut b = a.clone();
        assert_eq!(a.try_status(), None);
        task.exited(ExitStatus::exited(3));
        assert_eq!(a.wait().await.code, 3);
        assert_eq!(b.wait().await.reason, ExitReason::Error);
    }

    #[tokio::test]
    async fn first_stop_request_wins() {
        let (a, mut task) = RunningContainer::new("c", Utc::now());
        a.stop(Duration::from_secs(30));
        a.stop(Duration::from_secs(1));
        assert_eq!(task.stop_requested().await, Duration::from_secs(30));
    }

    #[tokio::test]
    async fn dropping_every_handle_is_a_stop() {
        let (a, mut task) = RunningContainer::new("c", Utc::now());
        let b = a.clone();
        drop(a);
        drop(b);
        assert_eq!(task.stop_requested().await, Duration::ZERO);
    }

    #[tokio::test]
    async fn lost_task_is_an_error_not_a_hang() {
        let (mut a, task) = RunningContainer::new("c", Utc::now());
        drop(task);
        let status = a.wait().await;
        assert_eq!(status.reason, ExitReason::Error);
        assert!(status.message.unwrap().contains("lost"));
    }
}
