//! One pod worker per pod bound to this node (kubelet's podWorkers): it starts the pod's
//! containers, restarts them by the restart policy with kubelet's back-off, writes the pod
//! status, and on deletion stops everything and removes the pod.
//!
//! Each container runs where its image is: an image in the node's wasm store runs in the
//! wasm [`Runtime`]; any other image is an OCI image, pulled and run by containerd
//! ([`OciRuntime`]) in the pod's sandbox.
//!
//! Whether a pod has a sandbox is decided once, at its first start, after every
//! container's image is located (pulled if its policy says so): the pull tells a wasm
//! artifact from a container image by its media types. A pod whose images are all wasm
//! components runs without containerd, its guests on the node's network; any other pod
//! gets its sandbox before its containers start (kubelet's order), and its guests join
//! the sandbox's network namespace. An image that cannot be had at that first start
//! counts as a container image: as in kubelet, the pod has its address while the image
//! backs off. The sandbox is removed with the pod.
//!
//! Init containers (`spec.initContainers`) come first: one at a time, in order, each run
//! to success (restarted with the back-off on failure, unless `restartPolicy: Never`
//! fails the pod) before the next, and all of them before any app container. They are
//! slots like the app containers, ahead of them; a completed one is never run again, also
//! after a node restart (its published status says it completed). Sidecars (an init
//! container with `restartPolicy: Always`) are run as ordinary init containers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodStatus};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::ControlPlane;
use crate::containerd::resources::{linux_resources, memory_limit};
use crate::containerd::sandbox::{pod_hostname, ContainerSpec, PodIdentity};
use crate::downward::NodeFacts;
use crate::env::{self, Sources};
use crate::images::{ImageStore, ResolvedImage};
use crate::logs::{container_log_path, LogWriter};
use crate::netns::PodNetns;
use crate::pull_policy::{PullDecision, PullPolicy};
use crate::registry::{Pulled, Puller};
use crate::registry_auth;
use crate::runtime::oci::{OciRuntime, Sandbox};
use crate::runtime::{ContainerConfig, ExitStatus, RunningContainer, Runtime, RuntimeError};
use crate::status::{self, ContainerRecord, RestartPolicy, State, StatusInput, Terminated};
use crate::volumes::PodVolumes;

/// How soon a container blocked on its configuration (`CreateContainerConfigError`) or a
/// pod blocked on its volumes (`FailedMount`) tries again: short, so that it starts about
/// as soon as the missing ConfigMap or Secret is created.
const CONFIG_RETRY: Duration = Duration::from_secs(1);

/// A container slot (by index in the pod spec) and how its run ended.
type SlotExit = (usize, ExitStatus);

/// Kubelet's crash-loop and image-pull back-off: 10 s doubling to 5 min.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    fn next(&self, current: Option<Duration>) -> Duration {
        match current {
            None => self.initial,
            Some(d) => (d * 2).min(self.max),
        }
    }
}

/// What every worker of a node shares.
pub struct NodeContext<C> {
    pub client: Arc<C>,
    pub runtime: Arc<dyn Runtime>,
    /// Runs OCI images; without it, an image the wasm store lacks cannot be pulled.
    pub oci: Option<Arc<OciRuntime>>,
    pub images: ImageStore,
    pub log_root: PathBuf,
    /// Where pods' volumes live: emptyDirs under each pod's uid, local-path volumes under
    /// `local-path/`.
    pub volume_root: PathBuf,
    pub host_ip: String,
    pub backoff: Backoff,
    /// Registries (`HOST:PORT`) spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Log files of containers still running: `kubectl logs -f` follows these until they end.
    pub active_logs: Arc<std::sync::Mutex<std::collections::HashSet<PathBuf>>>,
}

/// The node agent's handle on a worker: send it newer versions of the pod; dropping it
/// (the pod is gone from the API) stops the pod's containers.
pub struct WorkerHandle {
    pub updates: watch::Sender<Pod>,
    pub task: tokio::task::JoinHandle<()>,
}

pub fn spawn<C: ControlPlane>(ctx: Arc<NodeContext<C>>, pod: Pod) -> WorkerHandle {
    let (updates, rx) = watch::channel(pod);
    let task = tokio::spawn(Worker::new(ctx, rx).run());
    WorkerHandle { updates, task }
}

/// One container slot of the pod: its record for the status, its current run, and when it
/// may start again.
struct Slot {
    spec: Container,
    record: ContainerRecord,
    run: Option<RunningContainer>,
    /// A run that was started before (restarts count from the second start on).
    ran_before: bool,
    not_before: Option<Instant>,
    crash_backoff: Option<Duration>,
    pull_backoff: Option<Duration>,
    done: bool,
}

struct Worker<C> {
    ctx: Arc<NodeContext<C>>,
    updates: watch::Receiver<Pod>,
    pod: Pod,
    /// The init containers' slots, then the app containers'.
    slots: Vec<Slot>,
    /// How many of the slots are init containers.
    inits: usize,
    policy: RestartPolicy,
    start_time: chrono::DateTime<Utc>,
    /// Each container's waiter reports `(slot index, exit)` here.
    exits: (UnboundedSender<SlotExit>, UnboundedReceiver<SlotExit>),
    published: Option<k8s_openapi::api::core::v1::PodStatus>,
    /// Set up before the first container starts; kept across container restarts.
    volumes: Option<PodVolumes>,
    /// When to try setting up the volumes again, and the error last reported.
    volume_retry: Option<(Instant, String)>,
    /// Whether the pod runs in a sandbox: decided at its first start (see the module docs).
    sandboxed: Option<bool>,
    /// The pod's sandbox, once made.
    sandbox: Option<Sandbox>,
    /// Where the WASI guests of a pod with a sandbox run: in its network namespace.
    netns: Option<PodNetns>,
}

/// Why a container could not be started.
enum StartError {
    /// Its configuration refers to what is missing: `CreateContainerConfigError`.
    Config(String),
    /// Anything else: `CreateContainerError`.
    Create(String),
}

/// Where a container's image is, to run it.
enum Located {
    /// In the node's wasm store (`present`: it was there before, no pull).
    Wasm { image: ResolvedImage, present: bool },
    /// In containerd.
    Oci(Arc<OciRuntime>),
}

/// Why a container's image is not there to run.
enum PullError {
    /// `imagePullPolicy: Never` and the node lacks it: `ErrImageNeverPull`.
    Never(String),
    /// The pull failed: `ErrImagePull`, then `ImagePullBackOff`.
    Failed(String),
}

/// A container's environment and argv parts, before a runtime shapes them.
struct Prepared {
    env: env::Resolved,
    log_path: PathBuf,
}

/// A CRI error as kubelet shows it (`rpc error: code = NotFound desc = ...`).
fn cri_message(e: &crate::containerd::ContainerdError) -> String {
    match e {
        crate::containerd::ContainerdError::Cri { status, .. } => {
            format!(
                "rpc error: code = {:?} desc = {}",
                status.code(),
                status.message()
            )
        }
        other => other.to_string(),
    }
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

impl<C: ControlPlane> Worker<C> {
    fn new(ctx: Arc<NodeContext<C>>, updates: watch::Receiver<Pod>) -> Self {
        let pod = updates.borrow().clone();
        let spec = pod.spec.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let policy = RestartPolicy::parse(spec.restart_policy.as_deref());
        let init_specs = spec.init_containers.clone().unwrap_or_default();
        let inits = init_specs.len();
        let adopt_all = |specs: &[Container], previous: Option<Vec<ContainerStatus>>, policy| {
            let previous = previous.unwrap_or_default();
            specs
                .iter()
                .map(|c| Slot::adopt(c, previous.iter().find(|s| s.name == c.name), policy))
                .collect::<Vec<_>>()
        };
        let mut slots = adopt_all(
            &init_specs,
            status.init_container_statuses,
            policy.for_init(),
        );
        slots.extend(adopt_all(
            &spec.containers,
            status.container_statuses,
            policy,
        ));
        // Kubelet's waiting reason for what has not started while the pod initializes.
        if inits > 0 {
            for s in slots.iter_mut().filter(|s| !s.ran_before) {
                s.record.state = initializing();
            }
        }
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map_or_else(Utc::now, status::from_time);
        Worker {
            ctx,
            updates,
            published: pod.status.clone(),
            pod,
            slots,
            inits,
            policy,
            start_time,
            exits: mpsc::unbounded_channel(),
            volumes: None,
            volume_retry: None,
            sandboxed: None,
            sandbox: None,
            netns: None,
        }
    }

    async fn run(mut self) {
        // A pod that finished before this worker existed (e.g. before a node restart)
        // stays finished.
        let finished = matches!(
            self.pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if finished {
            for s in &mut self.slots {
                s.done = true;
            }
        } else {
            self.adopt_oci().await;
            self.adopt_node_restart();
        }
        loop {
            if self.pod.metadata.deletion_timestamp.is_some() {
                self.terminate().await;
                self.tear_down_volumes();
                if let Err(e) = self.ctx.client.finish_pod_deletion(&self.pod).await {
                    tracing::warn!(pod = pod_name(&self.pod), error = %e, "cannot remove pod");
                }
                return;
            }
            self.start_due().await;
            self.publish().await;
            let wake = self
                .slots
                .iter()
                .filter(|s| s.run.is_none() && !s.done)
                .filter_map(|s| s.not_before)
                .chain(self.volume_retry.as_ref().map(|(at, _)| *at))
                .min();
            tokio::select! {
                Some((i, exit)) = self.exits.1.recv() => self.exited(i, exit).await,
                changed = self.updates.changed() => {
                    if changed.is_err() {
                        // The pod is gone from the API: stop what still runs.
                        self.terminate().await;
                        self.tear_down_volumes();
                        return;
                    }
                    self.pod = self.updates.borrow_and_update().clone();
                }
                _ = sleep_until(wake) => {}
            }
        }
    }

    /// OCI containers outlive the node process: a restarted node takes over the pod's
    /// sandbox and the containers that still run, with their status and restart count.
    async fn adopt_oci(&mut self) {
        let Some(oci) = self.ctx.oci.clone() else {
            return;
        };
        const PREFIX: &str = "containerd://";
        if !self
            .slots
            .iter()
            .any(|s| s.record.container_id.starts_with(PREFIX))
        {
            return;
        }
        match oci.find_sandbox(&self.identity(), self.pod_log_dir()).await {
            Ok(Some(sandbox)) => self.sandbox = Some(sandbox),
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(pod = pod_name(&self.pod), error = %e, "cannot find the pod's sandbox");
                return;
            }
        }
        for i in 0..self.slots.len() {
            let record = &self.slots[i].record;
            let Some(id) = record.container_id.strip_prefix(PREFIX) else {
                continue;
            };
            if !record.is_running() {
                continue;
            }
            let restart = record.restart_count;
            match oci.adopt(id).await {
                Ok(Some(started)) => {
                    let log_path = self
                        .pod_log_dir()
                        .join(format!("{}/{restart}.log", self.slots[i].spec.name));
                    self.slots[i].record.image_id = started.image_ref;
                    self.follow(i, started.run, log_path);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(pod = pod_name(&self.pod), container = id, error = %e, "cannot adopt container")
                }
            }
        }
    }

    /// Containers that were running when the node went down died with it (unless adopted
    /// above): the next run is a restart, as after a node reboot in Kubernetes.
    fn adopt_node_restart(&mut self) {
        let now = Utc::now();
        let inits = self.inits;
        let slots = self.slots.iter_mut().enumerate();
        for (i, s) in slots.filter(|(_, s)| s.run.is_none()) {
            if let State::Running { started_at } = s.record.state {
                s.record.last_terminated = Some(Terminated {
                    exit_code: 255,
                    reason: "Unknown".into(),
                    message: Some("the node restarted".into()),
                    started_at,
                    finished_at: now,
                    container_id: s.record.container_id.clone(),
                });
                s.record.state = waiting_to_start(i < inits);
            }
        }
    }

    async fn start_due(&mut self) {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                let slot = &self.slots[i];
                slot.run.is_none()
                    && !slot.done
                    && slot.not_before.is_none_or(|t| t <= now)
                    && self.initialized_before(i)
            })
            .collect();
        if due.is_empty() || !self.volumes_ready(now).await {
            return;
        }
        let mut located = Vec::with_capacity(due.len());
        for i in due {
            let image = self.slots[i].spec.image.clone().unwrap_or_default();
            located.push((i, self.locate(i, &image).await));
        }
        // The sandbox comes first, as with kubelet: the pod has its address before its
        // containers start, and while an image backs off.
        let sandbox_failed = match self.decide_sandbox(&located) {
            Some(oci) => self.sandbox(&oci).await.err(),
            None => None,
        };
        for (i, located) in located {
            match (located, &sandbox_failed) {
                (Ok(_), Some(message)) => self.create_failed(i, message.clone()).await,
                (located, _) => self.start(i, located).await,
            }
        }
    }

    /// Whether the init containers before slot `i` (all of them, for an app container)
    /// have completed, so that it may start.
    fn initialized_before(&self, i: usize) -> bool {
        self.slots[..i.min(self.inits)]
            .iter()
            .all(|s| s.record.completed())
    }

    /// Decides, at the pod's first start, whether it runs in a sandbox (see the module
    /// docs) from where the images of the containers starting are (`located`); a sandbox
    /// adopted from a previous run of the node settles it. The OCI runtime if it does.
    /// Containers that start later (after the init containers) are not pulled yet: their
    /// image counts as a container image unless the wasm store has it.
    fn decide_sandbox(
        &mut self,
        located: &[(usize, Result<Located, PullError>)],
    ) -> Option<Arc<OciRuntime>> {
        if self.sandboxed.is_none() {
            let oci = located
                .iter()
                .any(|(_, l)| !matches!(l, Ok(Located::Wasm { .. })));
            let later_oci = (self.slots.iter().enumerate())
                .filter(|(i, s)| !s.done && !located.iter().any(|(j, _)| j == i))
                .any(|(_, s)| {
                    let image = s.spec.image.as_deref().unwrap_or_default();
                    !matches!(self.ctx.images.resolve(image), Ok(Some(_)))
                });
            self.sandboxed = Some(self.sandbox.is_some() || oci || later_oci);
        }
        self.ctx
            .oci
            .clone()
            .filter(|_| self.sandboxed == Some(true))
    }

    /// Sets up the pod's volumes once; while that fails (a missing ConfigMap, say) the
    /// containers wait in `ContainerCreating` and it is retried every [`CONFIG_RETRY`].
    async fn volumes_ready(&mut self, now: Instant) -> bool {
        if self.volumes.is_some() {
            return true;
        }
        if self.volume_retry.as_ref().is_some_and(|(at, _)| *at > now) {
            return false;
        }
        let facts = self.node_facts();
        let root = &self.ctx.volume_root;
        match PodVolumes::set_up(&self.ctx.client, &self.updates, &facts, root).await {
            Ok(v) => {
                self.volumes = Some(v);
                self.volume_retry = None;
                true
            }
            Err(e) => {
                let message = e.to_string();
                let repeated = self
                    .volume_retry
                    .as_ref()
                    .is_some_and(|(_, last)| *last == message);
                if !repeated {
                    let pod = self.pod.clone();
                    self.ctx
                        .client
                        .record_event(&pod, true, "FailedMount", &message)
                        .await;
                }
                self.volume_retry = Some((Instant::now() + CONFIG_RETRY, message));
                false
            }
        }
    }

    fn tear_down_volumes(&mut self) {
        if let Some(v) = self.volumes.take() {
            v.tear_down();
        }
    }

    /// The sandbox's address; wasm guests share the node's network, so a pod without a
    /// sandbox has the node's.
    fn pod_ip(&self) -> &str {
        self.sandbox.as_ref().map_or(&self.ctx.host_ip, |s| &s.ip)
    }

    fn node_facts(&self) -> NodeFacts {
        NodeFacts {
            host_ip: self.ctx.host_ip.clone(),
            pod_ip: self.pod_ip().to_string(),
            cpu_cores: crate::agent::cpus() as f64,
            memory_bytes: crate::agent::memory_kib() as f64 * 1024.0,
        }
    }

    /// Starts slot `i` where its image was located, or reports why it was not.
    async fn start(&mut self, i: usize, located: Result<Located, PullError>) {
        let image_name = self.slots[i].spec.image.clone().unwrap_or_default();
        match located {
            Ok(Located::Wasm { image, present }) => {
                self.start_wasm(i, &image_name, image, present).await
            }
            Ok(Located::Oci(oci)) => self.start_oci(i, &oci, &image_name).await,
            Err(PullError::Never(message)) => {
                let events = [
                    (true, "ErrImageNeverPull", message.clone()),
                    (true, "Failed", "Error: ErrImageNeverPull".into()),
                ];
                self.retry_soon(i, "ErrImageNeverPull", message, &events)
                    .await
            }
            Err(PullError::Failed(message)) => self.pull_failed(i, &image_name, message).await,
        }
    }

    /// The restart count the next run of slot `i` gets.
    fn next_restart(&self, i: usize) -> i32 {
        let slot = &self.slots[i];
        if slot.ran_before {
            slot.record.restart_count + 1
        } else {
            0
        }
    }

    async fn start_wasm(
        &mut self,
        i: usize,
        image_name: &str,
        image: ResolvedImage,
        present: bool,
    ) {
        self.slots[i].pull_backoff = None;
        let restart = self.next_restart(i);
        // In a pod with a sandbox, guests share its network.
        let netns = match self.ctx.oci.clone() {
            Some(oci) if self.sandboxed == Some(true) => match self.pod_netns(&oci).await {
                Ok(handle) => Some(handle),
                Err(message) => return self.create_failed(i, message).await,
            },
            _ => None,
        };
        let config = match self.container_config(i, restart, netns.is_some()).await {
            Ok(c) => c,
            Err(StartError::Config(message)) => return self.config_failed(i, message).await,
            Err(StartError::Create(message)) => return self.create_failed(i, message).await,
        };
        // Recorded once the container can start, not at every configuration retry.
        if present {
            let pod = self.pod.clone();
            self.ctx
                .client
                .record_event(
                    &pod,
                    false,
                    "Pulled",
                    &format!("Container image \"{image_name}\" already present on machine"),
                )
                .await;
        }
        let log_path = config.log.path().to_path_buf();
        let image_id = image.manifest_digest.clone();
        let started = match netns {
            // The guest's task is spawned from there, so it runs on that thread too.
            Some(handle) => {
                let runtime = self.ctx.runtime.clone();
                handle
                    .spawn(async move { runtime.start(&image, config).await })
                    .await
                    .unwrap_or_else(|e| Err(RuntimeError::Other(e.to_string())))
            }
            None => self.ctx.runtime.start(&image, config).await,
        };
        match started {
            Ok(run) => {
                let id = format!("wasmtime://{}", run.id());
                self.started(i, restart, run, id, image_id, log_path).await
            }
            Err(e) => self.create_failed(i, e.to_string()).await,
        }
    }

    /// The runtime thread in the pod sandbox's network namespace, started on first use.
    async fn pod_netns(&mut self, oci: &OciRuntime) -> Result<tokio::runtime::Handle, String> {
        let sandbox = self.sandbox(oci).await?;
        let netns = match self.netns.take() {
            Some(netns) => netns,
            None => {
                let pid = sandbox
                    .pid
                    .ok_or_else(|| format!("the sandbox {} has no process", sandbox.id))?;
                PodNetns::of_process(pid).map_err(|e| e.to_string())?
            }
        };
        let handle = netns.handle().clone();
        self.netns = Some(netns);
        Ok(handle)
    }

    async fn start_oci(&mut self, i: usize, oci: &Arc<OciRuntime>, image_name: &str) {
        let sandbox = match self.sandbox(oci).await {
            Ok(s) => s,
            Err(message) => return self.create_failed(i, message).await,
        };
        self.slots[i].pull_backoff = None;
        let restart = self.next_restart(i);
        let spec = match self.oci_spec(i, restart, image_name).await {
            Ok(s) => s,
            Err(StartError::Config(message)) => return self.config_failed(i, message).await,
            Err(StartError::Create(message)) => return self.create_failed(i, message).await,
        };
        match oci.start(&sandbox, &spec.0).await {
            Ok(started) => {
                // The run before this one is now `--previous`; older ones can go.
                let (gc, name) = (oci.clone(), self.slots[i].spec.name.clone());
                tokio::spawn(async move {
                    if let Err(e) = gc.remove_dead_containers(&sandbox, &name).await {
                        tracing::warn!(container = %name, error = %e, "container garbage collection");
                    }
                });
                let id = format!("containerd://{}", started.run.id());
                self.started(i, restart, started.run, id, started.image_ref, spec.1)
                    .await
            }
            Err(e) => self.create_failed(i, cri_message(&e)).await,
        }
    }

    /// Kubelet's image manager: finds the container's image on the node (the wasm store,
    /// then containerd) or pulls it, as its `imagePullPolicy` says, with the pod's
    /// `imagePullSecrets` and kubelet's `Pulling`/`Pulled` events. A pulled image is a
    /// wasm artifact (by its media types: into the wasm store) or else a container image
    /// (pulled by containerd).
    async fn locate(&self, i: usize, image: &str) -> Result<Located, PullError> {
        let spec = &self.slots[i].spec;
        let policy = PullPolicy::of(spec.image_pull_policy.as_deref(), image);
        let failed = |e: String| PullError::Failed(e);
        let stored = self
            .ctx
            .images
            .resolve(image)
            .map_err(|e| failed(e.to_string()))?;
        let oci = self.ctx.oci.clone();
        let in_containerd = match (&stored, &oci) {
            // A containerd this node never ran holds no image; asking would start it
            // (about a second) for what may be a wasm artifact still to pull.
            (None, Some(oci)) if oci.used_before() => oci
                .image_id(image)
                .await
                .map_err(|e| failed(cri_message(&e)))?
                .is_some(),
            _ => false,
        };
        let client = &self.ctx.client;
        match policy.decide(stored.is_some() || in_containerd) {
            PullDecision::UsePresent => {
                return Ok(match (stored, oci) {
                    (Some(image), _) => Located::Wasm {
                        image,
                        present: true,
                    },
                    (None, Some(oci)) => {
                        let message =
                            format!("Container image \"{image}\" already present on machine");
                        client
                            .record_event(&self.pod, false, "Pulled", &message)
                            .await;
                        Located::Oci(oci)
                    }
                    (None, None) => unreachable!("present in containerd without containerd"),
                })
            }
            PullDecision::NeverPull => {
                return Err(PullError::Never(format!(
                    "Container image \"{image}\" is not present with pull policy of Never"
                )))
            }
            PullDecision::Pull => {}
        }
        let credentials = self.registry_credentials(image).await?;
        client
            .record_event(
                &self.pod,
                false,
                "Pulling",
                &format!("Pulling image \"{image}\""),
            )
            .await;
        let began = std::time::Instant::now();
        let puller = Puller::new(self.ctx.images.clone(), &self.ctx.insecure_registries);
        let pulled = puller
            .pull(image, credentials.as_ref())
            .await
            .map_err(|e| failed(e.to_string()))?;
        let (located, size) = match (pulled, oci) {
            (Pulled::Wasm { image, size }, _) => (
                Located::Wasm {
                    image,
                    present: false,
                },
                size,
            ),
            (Pulled::NotWasm { .. }, Some(oci)) => {
                oci.pull(image, credentials.as_ref())
                    .await
                    .map_err(|e| failed(cri_message(&e)))?;
                let size = oci.image_size(image).await.unwrap_or_default();
                (Located::Oci(oci), size)
            }
            (Pulled::NotWasm { manifest_digest }, None) => {
                return Err(failed(format!(
                    "failed to pull and unpack image \"{image}\": {manifest_digest} is a container image, and this node runs wasm artifacts only"
                )))
            }
        };
        let took = go_duration(began.elapsed());
        let message = format!(
            "Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {size} bytes."
        );
        client
            .record_event(&self.pod, false, "Pulled", &message)
            .await;
        Ok(located)
    }

    /// The credentials for the image's registry in the pod's `imagePullSecrets`; a secret
    /// that does not exist is skipped with kubelet's warning.
    async fn registry_credentials(
        &self,
        image: &str,
    ) -> Result<Option<registry_auth::Credentials>, PullError> {
        let spec = self.pod.spec.as_ref();
        let names = spec.and_then(|s| s.image_pull_secrets.as_ref());
        let namespace = self.pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut secrets = Vec::new();
        for name in names.into_iter().flatten().map(|r| r.name.clone()) {
            match self.ctx.client.get_secret(namespace, &name).await {
                Ok(Some(secret)) => secrets.push(secret),
                Ok(None) => {
                    let message = format!(
                        "Unable to retrieve some image pull secrets ({name}); attempting to pull the image may not succeed."
                    );
                    self.ctx
                        .client
                        .record_event(&self.pod, true, "FailedToRetrieveImagePullSecret", &message)
                        .await
                }
                Err(e) => return Err(PullError::Failed(e.to_string())),
            }
        }
        registry_auth::credentials_for(image, &secrets)
            .map_err(|e| PullError::Failed(e.to_string()))
    }

    /// The pod's sandbox, created on first use.
    async fn sandbox(&mut self, oci: &OciRuntime) -> Result<Sandbox, String> {
        if let Some(s) = &self.sandbox {
            return Ok(s.clone());
        }
        let sandbox = oci
            .run_sandbox(&self.identity(), self.pod_log_dir())
            .await
            .map_err(|e| match e {
                crate::runtime::oci::OciError::Containerd(e) => cri_message(&e),
                other => other.to_string(),
            })?;
        self.sandbox = Some(sandbox.clone());
        Ok(sandbox)
    }

    fn identity(&self) -> PodIdentity {
        let meta = &self.pod.metadata;
        PodIdentity {
            name: pod_name(&self.pod).to_string(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            node: (self.pod.spec.as_ref())
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            attempt: 0,
            share_process_namespace: self.shares_processes(),
            hostname: pod_hostname(
                pod_name(&self.pod),
                self.pod.spec.as_ref().and_then(|s| s.hostname.as_deref()),
            ),
        }
    }

    fn shares_processes(&self) -> bool {
        let spec = self.pod.spec.as_ref();
        spec.and_then(|s| s.share_process_namespace) == Some(true)
    }

    /// The pod's log directory (kubelet's layout); each container logs under
    /// `<container>/<restart>.log` in it.
    fn pod_log_dir(&self) -> PathBuf {
        let meta = &self.pod.metadata;
        crate::logs::pod_log_dir(
            &self.ctx.log_root,
            meta.namespace.as_deref().unwrap_or_default(),
            pod_name(&self.pod),
            meta.uid.as_deref().unwrap_or_default(),
        )
    }

    /// Records a container that now runs, follows it to its exit, and tells the pod's
    /// events.
    async fn started(
        &mut self,
        i: usize,
        restart: i32,
        run: RunningContainer,
        container_id: String,
        image_id: String,
        log_path: PathBuf,
    ) {
        let pod = self.pod.clone();
        let slot = &mut self.slots[i];
        let name = slot.spec.name.clone();
        if slot.ran_before {
            slot.record.restart_count = restart;
        }
        slot.ran_before = true;
        slot.record.image_id = image_id;
        slot.record.container_id = container_id;
        slot.record.state = State::Running {
            started_at: run.started_at(),
        };
        slot.not_before = None;
        self.follow(i, run, log_path);
        self.ctx
            .client
            .record_event(
                &pod,
                false,
                "Created",
                &format!("Created container: {name}"),
            )
            .await;
        self.ctx
            .client
            .record_event(&pod, false, "Started", &format!("Started container {name}"))
            .await;
    }

    /// Keeps `run` in slot `i` and reports its exit; its log is followed while it runs.
    fn follow(&mut self, i: usize, run: RunningContainer, log_path: PathBuf) {
        self.ctx
            .active_logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(log_path.clone());
        let mut waiter = run.clone();
        self.slots[i].run = Some(run);
        let exits = self.exits.0.clone();
        let active = self.ctx.active_logs.clone();
        tokio::spawn(async move {
            let status = waiter.wait().await;
            active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&log_path);
            let _ = exits.send((i, status));
        });
    }

    /// What every runtime needs of a container's configuration: its environment (with
    /// the ConfigMaps and Secrets it names), its mounts and its log file.
    async fn prepare(&self, i: usize, restart: i32) -> Result<Prepared, StartError> {
        let spec = &self.slots[i].spec;
        let meta = &self.pod.metadata;
        let namespace = meta.namespace.as_deref().unwrap_or_default();
        let mut sources = Sources::default();
        let refs = env::references(spec);
        let client = &self.ctx.client;
        let failed = |e: crate::client::ClientError| StartError::Create(e.to_string());
        for name in refs.config_maps {
            if let Some(cm) = client
                .get_config_map(namespace, &name)
                .await
                .map_err(failed)?
            {
                sources.config_maps.insert(name, cm);
            }
        }
        for name in refs.secrets {
            if let Some(s) = client.get_secret(namespace, &name).await.map_err(failed)? {
                sources.secrets.insert(name, s);
            }
        }
        let resolved = env::resolve(&self.pod, spec, &self.node_facts(), &sources)
            .map_err(|e| StartError::Config(e.to_string()))?;
        for message in &resolved.skipped {
            client
                .record_event(&self.pod, true, "InvalidEnvironmentVariableNames", message)
                .await;
        }
        let log_path = container_log_path(
            &self.ctx.log_root,
            namespace,
            pod_name(&self.pod),
            meta.uid.as_deref().unwrap_or_default(),
            &spec.name,
            restart as u32,
        );
        Ok(Prepared {
            env: resolved,
            log_path,
        })
    }

    /// A wasm guest's configuration: argv, environment, mounts and a log writer; with
    /// `network` when it runs in its pod's network namespace.
    async fn container_config(
        &self,
        i: usize,
        restart: i32,
        network: bool,
    ) -> Result<ContainerConfig, StartError> {
        let prepared = self.prepare(i, restart).await?;
        let spec = &self.slots[i].spec;
        let uid = self.pod.metadata.uid.as_deref().unwrap_or_default();
        let mounts = match &self.volumes {
            Some(v) => v
                .mounts(spec)
                .map_err(|e| StartError::Create(e.to_string()))?,
            None => Vec::new(),
        };
        let log =
            LogWriter::create(&prepared.log_path).map_err(|e| StartError::Create(e.to_string()))?;
        let mut argv = prepared.env.command;
        if argv.is_empty() {
            argv.push(spec.name.clone());
        }
        argv.extend(prepared.env.args);
        let memory_limit =
            memory_limit(spec.resources.as_ref()).map_err(|e| StartError::Create(e.to_string()))?;
        Ok(ContainerConfig {
            id: format!("{uid}-{}-{restart}", spec.name),
            pod_uid: uid.to_string(),
            name: spec.name.clone(),
            argv,
            env: prepared.env.env,
            log,
            mounts,
            network,
            memory_limit,
        })
    }

    /// An OCI container's CRI configuration, and the log file containerd will write.
    async fn oci_spec(
        &self,
        i: usize,
        restart: i32,
        image: &str,
    ) -> Result<(ContainerSpec, PathBuf), StartError> {
        let prepared = self.prepare(i, restart).await?;
        let spec = &self.slots[i].spec;
        let mounts = match &self.volumes {
            Some(v) => v
                .host_mounts(spec)
                .map_err(|e| StartError::Create(e.to_string()))?,
            None => Vec::new(),
        };
        let mounts = mounts
            .into_iter()
            .map(|m| cri::v1::Mount {
                container_path: m.container_path,
                host_path: m.host_path.display().to_string(),
                readonly: m.read_only,
                ..Default::default()
            })
            .collect();
        let resources = linux_resources(spec.resources.as_ref())
            .map_err(|e| StartError::Create(e.to_string()))?;
        let log_path = format!("{}/{restart}.log", spec.name);
        Ok((
            ContainerSpec {
                name: spec.name.clone(),
                attempt: restart as u32,
                image: image.to_string(),
                command: prepared.env.command,
                args: prepared.env.args,
                env: prepared.env.env,
                working_dir: spec.working_dir.clone().unwrap_or_default(),
                log_path,
                mounts,
                resources,
                pod_uid: self.pod.metadata.uid.clone().unwrap_or_default(),
                share_process_namespace: self.shares_processes(),
                stdin: spec.stdin.unwrap_or_default(),
                stdin_once: spec.stdin_once.unwrap_or_default(),
                tty: spec.tty.unwrap_or_default(),
            },
            prepared.log_path,
        ))
    }

    /// Kubelet's `CreateContainerConfigError`: see [`Self::retry_soon`].
    async fn config_failed(&mut self, i: usize, message: String) {
        let events = [(true, "Failed", format!("Error: {message}"))];
        self.retry_soon(i, "CreateContainerConfigError", message, &events)
            .await
    }

    /// Kubelet's `CreateContainerConfigError` and `ErrImageNeverPull`: the container
    /// waits, and is tried again shortly (the missing object or image may appear); the
    /// events `(warning, reason, message)` are recorded when the reason is new.
    async fn retry_soon(
        &mut self,
        i: usize,
        reason: &str,
        message: String,
        events: &[(bool, &str, String)],
    ) {
        let pod = self.pod.clone();
        let slot = &mut self.slots[i];
        slot.not_before = Some(Instant::now() + CONFIG_RETRY);
        let state = State::Waiting {
            reason: reason.into(),
            message: Some(message),
        };
        if slot.record.state == state {
            return;
        }
        slot.record.state = state;
        for (warning, reason, message) in events {
            self.ctx
                .client
                .record_event(&pod, *warning, reason, message)
                .await;
        }
    }

    async fn pull_failed(&mut self, i: usize, image: &str, message: String) {
        let pod = self.pod.clone();
        let slot = &mut self.slots[i];
        let first = slot.pull_backoff.is_none();
        let backoff = self.ctx.backoff.next(slot.pull_backoff);
        slot.pull_backoff = Some(backoff);
        slot.not_before = Some(Instant::now() + backoff);
        let reason = if first {
            "ErrImagePull"
        } else {
            "ImagePullBackOff"
        };
        let shown = if first {
            message.clone()
        } else {
            format!("Back-off pulling image \"{image}\": ErrImagePull: {message}")
        };
        slot.record.state = State::Waiting {
            reason: reason.into(),
            message: Some(shown),
        };
        let client = &self.ctx.client;
        if first {
            client
                .record_event(
                    &pod,
                    true,
                    "Failed",
                    &format!("Failed to pull image \"{image}\": {message}"),
                )
                .await;
            client
                .record_event(&pod, true, "Failed", "Error: ErrImagePull")
                .await;
        } else {
            client
                .record_event(
                    &pod,
                    false,
                    "BackOff",
                    &format!("Back-off pulling image \"{image}\""),
                )
                .await;
            client
                .record_event(&pod, true, "Failed", "Error: ImagePullBackOff")
                .await;
        }
    }

    async fn create_failed(&mut self, i: usize, message: String) {
        let pod = self.pod.clone();
        let slot = &mut self.slots[i];
        let backoff = self.ctx.backoff.next(slot.crash_backoff);
        slot.crash_backoff = Some(backoff);
        slot.not_before = Some(Instant::now() + backoff);
        slot.record.state = State::Waiting {
            reason: "CreateContainerError".into(),
            message: Some(message.clone()),
        };
        self.ctx
            .client
            .record_event(&pod, true, "Failed", &format!("Error: {message}"))
            .await;
    }

    async fn exited(&mut self, i: usize, exit: ExitStatus) {
        let init = i < self.inits;
        let policy = if init {
            self.policy.for_init()
        } else {
            self.policy
        };
        let backoff_policy = self.ctx.backoff;
        let pod = self.pod.clone();
        let slot = &mut self.slots[i];
        let Some(run) = slot.run.take() else { return };
        let ended = Terminated {
            exit_code: exit.code,
            reason: exit.reason.as_k8s_reason().into(),
            message: exit.message.clone(),
            started_at: run.started_at(),
            finished_at: exit.finished_at,
            container_id: slot.record.container_id.clone(),
        };
        if !policy.restarts(exit.code) {
            slot.record.state = State::Terminated(ended);
            slot.done = true;
            return;
        }
        // A container that ran long enough is not crash-looping: its back-off resets.
        let ran_for = (ended.finished_at - ended.started_at)
            .to_std()
            .unwrap_or_default();
        if ran_for > backoff_policy.max * 2 {
            slot.crash_backoff = None;
        }
        slot.record.last_terminated = Some(ended);
        match slot.crash_backoff {
            // The first crash restarts at once; later ones wait, doubling each time.
            None => {
                slot.crash_backoff = Some(Duration::ZERO);
                slot.record.state = waiting_to_start(init);
                slot.not_before = None;
            }
            Some(current) => {
                let wait = backoff_policy.next(Some(current).filter(|d| !d.is_zero()));
                slot.crash_backoff = Some(wait);
                slot.not_before = Some(Instant::now() + wait);
                let name = slot.spec.name.clone();
                let pod_ref = format!(
                    "{}_{}({})",
                    pod_name(&pod),
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.uid.as_deref().unwrap_or_default()
                );
                slot.record.state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(format!(
                        "back-off {}s restarting failed container={name} pod={pod_ref}",
                        wait.as_secs()
                    )),
                };
                self.ctx
                    .client
                    .record_event(
                        &pod,
                        true,
                        "BackOff",
                        &format!("Back-off restarting failed container {name} in pod {pod_ref}"),
                    )
                    .await;
            }
        }
    }

    /// Stops every running container within the pod's grace period and records how they
    /// ended.
    async fn terminate(&mut self) {
        let grace = Duration::from_secs(
            self.pod
                .metadata
                .deletion_grace_period_seconds
                .or_else(|| {
                    self.pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                })
                .unwrap_or(30)
                .max(0) as u64,
        );
        let pod = self.pod.clone();
        for slot in &self.slots {
            if let Some(run) = &slot.run {
                self.ctx
                    .client
                    .record_event(
                        &pod,
                        false,
                        "Killing",
                        &format!("Stopping container {}", slot.spec.name),
                    )
                    .await;
                run.stop(grace);
            }
        }
        for i in 0..self.slots.len() {
            if let Some(mut run) = self.slots[i].run.clone() {
                let exit = run.wait().await;
                let slot = &mut self.slots[i];
                slot.run = None;
                slot.done = true;
                slot.record.state = State::Terminated(Terminated {
                    exit_code: exit.code,
                    reason: exit.reason.as_k8s_reason().into(),
                    message: exit.message,
                    started_at: run.started_at(),
                    finished_at: exit.finished_at,
                    container_id: slot.record.container_id.clone(),
                });
            }
        }
        // Its containers are stopped: the sandbox goes (its address stays in the status).
        if let (Some(sandbox), Some(oci)) = (&self.sandbox, &self.ctx.oci) {
            if let Err(e) = oci.remove_sandbox(&sandbox.id).await {
                tracing::warn!(pod = pod_name(&self.pod), error = %e, "cannot remove the pod sandbox");
            }
        }
        self.publish().await;
    }

    async fn publish(&mut self) {
        let records: Vec<ContainerRecord> = self.slots.iter().map(|s| s.record.clone()).collect();
        let (init_containers, containers) = records.split_at(self.inits);
        let status = status::pod_status(&StatusInput {
            policy: self.policy,
            init_containers,
            containers,
            host_ip: &self.ctx.host_ip,
            pod_ip: self.pod_ip(),
            start_time: self.start_time,
            previous: self.published.as_ref(),
            now: Utc::now(),
        });
        let readiness_overruled = readiness(self.pod.status.as_ref()) != readiness(Some(&status));
        if self.published.as_ref() == Some(&status) && !readiness_overruled {
            return;
        }
        match self
            .ctx
            .client
            .update_pod_status(&self.pod, status.clone())
            .await
        {
            Ok(()) => {
                tracing::debug!(
                    pod = pod_name(&self.pod),
                    phase = status.phase.as_deref(),
                    "status written"
                );
                self.published = Some(status)
            }
            Err(e) => {
                tracing::warn!(pod = pod_name(&self.pod), error = %e, "cannot write pod status")
            }
        }
    }
}

/// The status of a pod's Ready condition. The node lifecycle controller sets it False
/// while it believes the node unreachable; a node that was only cut off writes its own view
/// again once it is back (as the kubelet's status manager reconciles with the API).
fn readiness(status: Option<&PodStatus>) -> Option<&str> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

impl Slot {
    /// A slot for `spec`, continuing from the status an earlier worker (before a node
    /// restart) reported for it.
    fn adopt(spec: &Container, old: Option<&ContainerStatus>, policy: RestartPolicy) -> Self {
        let mut record =
            ContainerRecord::new(&spec.name, spec.image.as_deref().unwrap_or_default());
        let mut done = false;
        if let Some(old) = old {
            record.restart_count = old.restart_count;
            record.container_id = old.container_id.clone().unwrap_or_default();
            record.last_terminated = old
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(adopt);
            let state = old.state.clone().unwrap_or_default();
            if let Some(t) = state.terminated.as_ref().map(adopt) {
                done = !policy.restarts(t.exit_code);
                record.state = State::Terminated(t);
            } else if let Some(started) = state.running.and_then(|r| r.started_at) {
                record.state = State::Running {
                    started_at: status::from_time(&started),
                };
            }
        }
        let ran_before = record.restart_count > 0
            || !matches!(record.state, State::Waiting { .. })
            || record.last_terminated.is_some();
        Slot {
            spec: spec.clone(),
            record,
            run: None,
            ran_before,
            not_before: None,
            crash_backoff: None,
            pull_backoff: None,
            done,
        }
    }
}

/// Kubelet's waiting state of a container that waits for the pod's init containers (and
/// of an init container about to run: `kubectl get pod` then shows `Init:N/M`).
fn initializing() -> State {
    State::Waiting {
        reason: "PodInitializing".into(),
        message: None,
    }
}

/// The waiting state of a container about to start again: init containers keep the pod
/// initializing.
fn waiting_to_start(init: bool) -> State {
    if init {
        initializing()
    } else {
        State::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        }
    }
}

fn adopt(t: &k8s_openapi::api::core::v1::ContainerStateTerminated) -> Terminated {
    let at = |x: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        x.as_ref().map_or_else(Utc::now, status::from_time)
    };
    Terminated {
        exit_code: t.exit_code,
        reason: t.reason.clone().unwrap_or_default(),
        message: t.message.clone(),
        started_at: at(&t.started_at),
        finished_at: at(&t.finished_at),
        container_id: t.container_id.clone().unwrap_or_default(),
    }
}

/// A duration as Go prints it truncated to milliseconds (`812ms`, `1.5s`), the way
/// kubelet's pull events show it.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        1..1000 => format!("{ms}ms"),
        _ => {
            let fraction = format!("{:03}", ms % 1000);
            let fraction = fraction.trim_end_matches('0');
            let dot = if fraction.is_empty() { "" } else { "." };
            format!("{}{dot}{fraction}s", ms / 1000)
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (0, "0s"),
            (812, "812ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (12_345, "12.345s"),
        ];
        for (ms, want) in cases {
            assert_eq!(go_duration(Duration::from_millis(ms)), want, "{ms}ms");
        }
    }
}
