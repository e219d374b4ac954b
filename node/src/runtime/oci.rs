//! OCI containers, run by containerd through its CRI service: the pod worker's second
//! runtime, next to [`super::wasm`]. Unlike a wasm guest, an OCI container lives in a pod
//! sandbox (its network namespace and IP), so the worker asks for the sandbox first and
//! hands it to [`OciRuntime::start`].
//!
//! containerd is reached lazily: the node's own instance ([`Supervisor`] under the data
//! directory) is started on the first OCI pod, or an existing one is used
//! ([`OciSettings::socket`]). containerd 1.6 has no `GetContainerEvents`, so each running
//! container is watched by polling `ContainerStatus` every [`POLL`].
//!
//! The handle contract of [`RunningContainer`] holds here too, with one difference: a
//! container keeps running when the node process dies (it belongs to its shim), and a
//! restarted node takes it over with [`OciRuntime::adopt`], and removes the sandboxes of
//! pods that went meanwhile (the agent's housekeeping, [`OciRuntime::node_sandboxes`]).
//! Exited containers stay until their container starts again: then all but the newest
//! go ([`OciRuntime::remove_dead_containers`], kubelet's container GC).
//!
//! With its own containerd, the node keeps a few sandboxes made ahead of time and gives
//! new pods those ([`SandboxPool`]): a pod's start then skips most of its sandbox's cost.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cri::v1::{ContainerState, PodSandboxConfig};
use tokio::sync::OnceCell;

use super::{ContainerTask, ContainerUsage, ExitReason, ExitStatus, RunningContainer};
use crate::containerd::image_import::{ImageImporter, ImportError};
use crate::containerd::network::PodNetwork;
use crate::containerd::sandbox::{
    sandbox_config, ContainerSpec, PodIdentity, CONTAINER_NAME_LABEL, POD_UID_LABEL,
};
use crate::containerd::sandbox_pool::{Claim, Claims, PoolError, SandboxPool, POOL_LABEL};
use crate::containerd::supervisor::{Settings, Supervisor};
use crate::containerd::{channel, pause, ContainerdError, CriClient};
use crate::image_archive::ContainerImage;
use crate::registry_auth::Credentials;

/// How often a running container's state is read.
pub const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    #[error("the sandbox of pod {pod} got no IP address")]
    NoAddress { pod: String },
    #[error(transparent)]
    Pool(#[from] PoolError),
}

/// How the node reaches containerd.
#[derive(Debug, Clone)]
pub struct OciSettings {
    /// Where the node's own containerd keeps everything.
    pub dir: PathBuf,
    /// An existing containerd's socket, used instead of starting one.
    pub socket: Option<PathBuf>,
    /// Registries (`host:port`) pulled from over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Sandboxes kept ready for new pods ([`SandboxPool`]); only with the node's own
    /// containerd, whose files the pool must reach.
    pub sandbox_pool: Option<PoolSettings>,
}

/// The pool of sandboxes made ahead of time.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// The node whose sandboxes they are.
    pub node: String,
    /// How many are kept ready; 0 only clears what a larger pool left.
    pub size: usize,
}

struct Connected {
    /// The connection both clients share.
    channel: tonic::transport::Channel,
    cri: CriClient,
    /// Holds the node's own containerd; `None` when using an existing one.
    supervisor: Option<Supervisor>,
    /// Which pod each claimed pooled sandbox is.
    claims: Arc<Claims>,
    pool: Option<Arc<SandboxPool>>,
    /// Keeps the pool full; stopped with the runtime.
    _filling: Option<AbortOnDrop>,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Who a sandbox of this node is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A pod's, made for it or claimed from the pool.
    Pod(Claim),
    /// The pool's, not claimed: the pool looks after it.
    Pool,
}

pub struct OciRuntime {
    settings: OciSettings,
    connected: OnceCell<Connected>,
}

/// A pod's sandbox: its containers share its namespaces and address.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub id: String,
    pub config: PodSandboxConfig,
    pub ip: String,
    /// Its pause process, whose network namespace the pod's WASI guests join.
    pub pid: Option<u32>,
}

/// A container that runs, and the image it runs as CRI names it (`imageID`).
pub struct Started {
    pub run: RunningContainer,
    pub image_ref: String,
}

impl OciRuntime {
    pub fn new(settings: OciSettings) -> Self {
        OciRuntime {
            settings,
            connected: OnceCell::new(),
        }
    }

    /// A client on containerd, starting it on first use.
    pub async fn cri(&self) -> Result<CriClient, ContainerdError> {
        Ok(self.connected().await?.cri.clone())
    }

    async fn connected(&self) -> Result<&Connected, ContainerdError> {
        self.connected
            .get_or_try_init(|| async {
                let supervisor = match &self.settings.socket {
                    Some(_) => None,
                    None => Some(
                        Supervisor::start(Settings {
                            dir: self.settings.dir.clone(),
                            sandbox_image: pause::IMAGE.into(),
                            insecure_registries: self.settings.insecure_registries.clone(),
                            network: PodNetwork::for_dir(&self.settings.dir),
                        })
                        .await?,
                    ),
                };
                let socket = match (&self.settings.socket, &supervisor) {
                    (Some(socket), _) => socket.clone(),
                    (None, Some(s)) => s.socket(),
                    (None, None) => unreachable!("a supervisor is started without a socket"),
                };
                let channel = channel(&socket).await?;
                let cri = CriClient::new(channel.clone());
                let claims = Arc::new(Claims::of_node(&self.settings.dir)?);
                let pool = match (&self.settings.sandbox_pool, &supervisor) {
                    (Some(pool), Some(_)) => Some(Arc::new(SandboxPool::new(
                        &pool.node,
                        pool.size,
                        &self.settings.dir,
                        claims.clone(),
                    ))),
                    _ => None,
                };
                let filling =
                    (pool.clone()).map(|pool| AbortOnDrop(tokio::spawn(pool.fill(cri.clone()))));
                Ok::<_, ContainerdError>(Connected {
                    cri,
                    channel,
                    supervisor,
                    claims,
                    pool,
                    _filling: filling,
                })
            })
            .await
    }

    /// Imports the container images of the OCI image archive at `path` (read by
    /// [`crate::image_archive::read_archive`]) into containerd's store.
    pub async fn import_images(
        &self,
        path: &Path,
        images: &[ContainerImage],
    ) -> Result<(), ImportError> {
        let channel = self.connected().await?.channel.clone();
        ImageImporter::new(channel).import(path, images).await
    }

    /// Stops the node's own containerd, if this runtime started it, and waits for it.
    pub async fn shutdown(self) {
        if let Some(supervisor) = self.connected.into_inner().and_then(|c| c.supervisor) {
            supervisor.stop().await;
        }
    }

    /// Whether this node has run containerd before (or uses an existing one): only then can
    /// it hold sandboxes a previous run of the node left.
    pub fn used_before(&self) -> bool {
        self.settings.socket.is_some() || self.settings.dir.join("config.toml").exists()
    }

    /// The sandboxes, in any state, that the node `node` made, and whose each is.
    pub async fn node_sandboxes(
        &self,
        node: &str,
    ) -> Result<Vec<(String, Owner)>, ContainerdError> {
        let connected = self.connected().await?;
        let sandboxes = connected.cri.clone().node_sandboxes(node).await?;
        connected
            .claims
            .retain(|id| sandboxes.iter().any(|s| s.id == id));
        Ok(sandboxes
            .into_iter()
            .filter_map(|sandbox| {
                let owner = if sandbox.labels.contains_key(POOL_LABEL) {
                    (connected.claims.of_sandbox(&sandbox.id)).map_or(Owner::Pool, Owner::Pod)
                } else {
                    let meta = sandbox.metadata?;
                    Owner::Pod(Claim {
                        uid: meta.uid,
                        namespace: meta.namespace,
                        name: meta.name,
                    })
                };
                Some((sandbox.id, owner))
            })
            .collect())
    }

    /// What the OCI containers used so far. Nothing when this node has not needed
    /// containerd yet: measuring does not start it.
    pub async fn usage(&self) -> Result<Vec<ContainerUsage>, ContainerdError> {
        let Some(connected) = self.connected.get() else {
            return Ok(Vec::new());
        };
        let stats = connected.cri.clone().container_stats().await?;
        Ok(stats.iter().filter_map(container_usage).collect())
    }

    /// The image's id if containerd has it.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>, ContainerdError> {
        Ok(self.cri().await?.image_status(image).await?.map(|i| i.id))
    }

    /// The image's size as containerd counts it (0 when it does not have it).
    pub async fn image_size(&self, image: &str) -> Result<u64, ContainerdError> {
        Ok(self
            .cri()
            .await?
            .image_status(image)
            .await?
            .map_or(0, |i| i.size))
    }

    /// Pulls an image (with the registry's credentials, if any); returns its id.
    pub async fn pull(
        &self,
        image: &str,
        credentials: Option<&Credentials>,
    ) -> Result<String, ContainerdError> {
        // No `server_address`: containerd 1.6 parses it as a URL, which a bare `host:port`
        // is not; without it the credentials go to the image's own registry.
        let auth = credentials.map(|c| cri::v1::AuthConfig {
            username: c.username.clone(),
            password: c.password.clone(),
            ..Default::default()
        });
        self.cri().await?.pull_image(image, auth).await
    }

    /// The pod's sandbox: one from the pool if it has one that fits, else a new one;
    /// containerd writes its containers' logs under `log_dir`.
    pub async fn run_sandbox(
        &self,
        pod: &PodIdentity,
        log_dir: PathBuf,
    ) -> Result<Sandbox, OciError> {
        let connected = self.connected().await?;
        let mut cri = connected.cri.clone();
        let config = sandbox_config(pod, log_dir);
        if let Some(pool) = &connected.pool {
            if let Some(pooled) = pool.claim(&mut cri, pod).await {
                return Ok(Sandbox {
                    id: pooled.id,
                    config,
                    ip: pooled.ip,
                    pid: Some(pooled.pid),
                });
            }
        }
        let id = cri.run_sandbox(&config).await?;
        let ip = cri
            .sandbox_ip(&id)
            .await?
            .ok_or_else(|| OciError::NoAddress {
                pod: pod.name.clone(),
            })?;
        let pid = cri.sandbox_pid(&id).await?;
        Ok(Sandbox {
            id,
            config,
            ip,
            pid,
        })
    }

    /// The ready sandbox a previous run of the node made for this pod, if any.
    pub async fn find_sandbox(
        &self,
        pod: &PodIdentity,
        log_dir: PathBuf,
    ) -> Result<Option<Sandbox>, OciError> {
        let connected = self.connected().await?;
        let mut cri = connected.cri.clone();
        let found = cri.pod_sandboxes(&pod.uid).await?.into_iter().next();
        let (id, attempt) = match found {
            Some(found) => (found.id, found.metadata.map_or(0, |m| m.attempt)),
            None => match connected.claims.of_pod(&pod.uid) {
                Some(id) if cri.sandbox_ready(&id).await? => (id, 0),
                _ => return Ok(None),
            },
        };
        let config = sandbox_config(
            &PodIdentity {
                attempt,
                ..pod.clone()
            },
            log_dir,
        );
        let ip = cri.sandbox_ip(&id).await?.unwrap_or_default();
        let pid = cri.sandbox_pid(&id).await?;
        Ok(Some(Sandbox {
            id,
            config,
            ip,
            pid,
        }))
    }

    /// Stops and removes a sandbox with whatever still runs in it.
    pub async fn remove_sandbox(&self, id: &str) -> Result<(), ContainerdError> {
        let connected = self.connected().await?;
        connected.cri.clone().remove_sandbox(id).await?;
        connected.claims.forget(id);
        Ok(())
    }

    /// Kubelet's container garbage collection for one container of a pod: of its exited
    /// runs in the sandbox, the newest stays (for `kubectl logs --previous`), the older
    /// ones go from containerd with their log files.
    pub async fn remove_dead_containers(
        &self,
        sandbox: &Sandbox,
        name: &str,
    ) -> Result<(), ContainerdError> {
        let mut cri = self.cri().await?;
        let mut dead = cri.exited_containers(&sandbox.id, name).await?;
        dead.pop();
        for container in dead {
            // containerd keeps the log file (kubelet removes it): its path is the status's.
            let log = cri.container_status(&container.id).await?.log_path;
            cri.remove_container(&container.id).await?;
            if !log.is_empty() {
                let log = Path::new(&sandbox.config.log_directory).join(log);
                if let Err(e) = std::fs::remove_file(&log) {
                    tracing::debug!(log = %log.display(), error = %e, "removing a dead container's log");
                }
            }
        }
        Ok(())
    }

    /// Creates and starts a container in the sandbox.
    pub async fn start(
        &self,
        sandbox: &Sandbox,
        spec: &ContainerSpec,
    ) -> Result<Started, ContainerdError> {
        let mut cri = self.cri().await?;
        let id = cri
            .start_container(&sandbox.id, &sandbox.config, spec)
            .await?;
        self.watch(cri, id).await
    }

    /// Takes over a container a previous run of the node started: `None` unless it still
    /// runs.
    pub async fn adopt(&self, id: &str) -> Result<Option<Started>, ContainerdError> {
        let mut cri = self.cri().await?;
        match cri.container_status(id).await {
            Ok(s) if s.state == ContainerState::ContainerRunning as i32 => {
                self.watch(cri, id.to_string()).await.map(Some)
            }
            Ok(_) => Ok(None),
            Err(ContainerdError::Cri { status, .. }) if status.code() == tonic::Code::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn watch(&self, mut cri: CriClient, id: String) -> Result<Started, ContainerdError> {
        let status = cri.container_status(&id).await?;
        let (run, task) = RunningContainer::new(id.as_str(), from_nanos(status.started_at));
        tokio::spawn(follow(cri, id, task));
        Ok(Started {
            run,
            image_ref: status.image_ref,
        })
    }
}

/// Reports the container's exit to its handles, and stops it when they ask.
async fn follow(mut cri: CriClient, id: String, mut task: ContainerTask) {
    let mut stopping = false;
    loop {
        tokio::select! {
            grace = task.stop_requested(), if !stopping => {
                stopping = true;
                // SIGTERM, then SIGKILL after the grace period; returns once it is gone.
                let seconds = grace.as_secs().try_into().unwrap_or(i64::MAX);
                if let Err(e) = cri.stop_container(&id, seconds).await {
                    tracing::warn!(container = %id, error = %e, "cannot stop container");
                }
            }
            _ = tokio::time::sleep(POLL) => {}
        }
        match cri.container_status(&id).await {
            Ok(status) => {
                if let Some(exit) = exit_status(&status) {
                    return task.exited(exit);
                }
            }
            Err(ContainerdError::Cri { status, .. }) if status.code() == tonic::Code::NotFound => {
                return task.exited(ExitStatus::error(
                    super::KILLED_EXIT_CODE,
                    format!("container {id} is gone from containerd"),
                ));
            }
            // containerd restarting: the container itself runs on; ask again.
            Err(e) => tracing::debug!(container = %id, error = %e, "container status"),
        }
    }
}

fn from_nanos(nanos: i64) -> DateTime<Utc> {
    if nanos <= 0 {
        return Utc::now();
    }
    DateTime::from_timestamp_nanos(nanos)
}

/// How a container ended, from its CRI status; `None` while it has not.
pub fn exit_status(status: &cri::v1::ContainerStatus) -> Option<ExitStatus> {
    if status.state != ContainerState::ContainerExited as i32 {
        return None;
    }
    let reason = match (status.reason.as_str(), status.exit_code) {
        ("OOMKilled", _) => ExitReason::OomKilled,
        (_, 0) => ExitReason::Completed,
        _ => ExitReason::Error,
    };
    Some(ExitStatus {
        code: status.exit_code,
        reason,
        message: Some(status.message.clone()).filter(|m| !m.is_empty()),
        finished_at: from_nanos(status.finished_at),
    })
}

/// A container's CRI stats as the usage of one of our pods' containers; `None` for a
/// container we did not create or whose counters containerd has not read yet.
fn container_usage(stats: &cri::v1::ContainerStats) -> Option<ContainerUsage> {
    let attributes = stats.attributes.as_ref()?;
    let cpu = stats.cpu.as_ref()?.usage_core_nano_seconds.as_ref()?.value;
    let memory = stats.memory.as_ref()?.working_set_bytes.as_ref()?.value;
    Some(ContainerUsage {
        id: attributes.id.clone(),
        pod_uid: attributes.labels.get(POD_UID_LABEL)?.clone(),
        name: attributes.labels.get(CONTAINER_NAME_LABEL)?.clone(),
        cpu_ns: cpu,
        memory_bytes: memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: ContainerState, code: i32, reason: &str) -> cri::v1::ContainerStatus {
        cri::v1::ContainerStatus {
            state: state as i32,
            exit_code: code,
            reason: reason.into(),
            finished_at: 1_700_000_000_123_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn cri_states_map_to_exits() {
        assert_eq!(
            exit_status(&status(ContainerState::ContainerRunning, 0, "")),
            None
        );
        let table = [
            (0, "Completed", ExitReason::Completed),
            (3, "Error", ExitReason::Error),
            (137, "OOMKilled", ExitReason::OomKilled),
            (143, "Error", ExitReason::Error),
        ];
        for (code, reason, expected) in table {
            let exit = exit_status(&status(ContainerState::ContainerExited, code, reason)).unwrap();
            assert_eq!((exit.code, exit.reason), (code, expected), "{reason}");
            assert_eq!(exit.finished_at.timestamp(), 1_700_000_000);
        }
    }
}
