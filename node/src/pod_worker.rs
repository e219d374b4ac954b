//! One pod worker per pod bound to this node (kubelet's podWorkers): it starts the pod's
//! containers, restarts them by the restart policy with kubelet's back-off, writes the pod
//! status, and on deletion stops everything and removes the pod.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::ControlPlane;
use crate::downward::NodeFacts;
use crate::env::{self, Sources};
use crate::images::{ImageStore, ResolvedImage};
use crate::logs::{container_log_path, LogWriter};
use crate::registry::{Pulled, Puller};
use crate::runtime::{ContainerConfig, ExitStatus, RunningContainer, Runtime};
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
    pub images: ImageStore,
    pub log_root: PathBuf,
    /// Where pods' emptyDir volumes live.
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
    slots: Vec<Slot>,
    policy: RestartPolicy,
    start_time: chrono::DateTime<Utc>,
    /// Each container's waiter reports `(slot index, exit)` here.
    exits: (UnboundedSender<SlotExit>, UnboundedReceiver<SlotExit>),
    published: Option<k8s_openapi::api::core::v1::PodStatus>,
    /// Set up before the first container starts; kept across container restarts.
    volumes: Option<PodVolumes>,
    /// When to try setting up the volumes again, and the error last reported.
    volume_retry: Option<(Instant, String)>,
}

/// Why a container's image is not there to run.
enum ImageFailure {
    /// `imagePullPolicy: Never` and the image is not on the node: `ErrImageNeverPull`.
    NeverPull(String),
    /// The pull failed: `ErrImagePull`, then `ImagePullBackOff`.
    Pull(String),
}

/// Why a container could not be started.
enum StartError {
    /// Its configuration refers to what is missing: `CreateContainerConfigError`.
    Config(String),
    /// Anything else: `CreateContainerError`.
    Create(String),
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

impl<C: ControlPlane> Worker<C> {
    fn new(ctx: Arc<NodeContext<C>>, updates: watch::Receiver<Pod>) -> Self {
        let pod = updates.borrow().clone();
        let spec = pod.spec.clone().unwrap_or_default();
        let previous = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        let policy = RestartPolicy::parse(spec.restart_policy.as_deref());
        let slots = spec
            .containers
            .iter()
            .map(|c| Slot::adopt(c, previous.iter().find(|s| s.name == c.name), policy))
            .collect();
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
            policy,
            start_time,
            exits: mpsc::unbounded_channel(),
            volumes: None,
            volume_retry: None,
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

    /// Containers that were running when the node went down died with it: the next run
    /// is a restart, as after a node reboot in Kubernetes.
    fn adopt_node_restart(&mut self) {
        let now = Utc::now();
        for s in &mut self.slots {
            if let State::Running { started_at } = s.record.state {
                s.record.last_terminated = Some(Terminated {
                    exit_code: 255,
                    reason: "Unknown".into(),
                    message: Some("the node restarted".into()),
                    started_at,
                    finished_at: now,
                    container_id: s.record.container_id.clone(),
                });
                s.record.state = State::Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                };
            }
        }
    }

    async fn start_due(&mut self) {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                let slot = &self.slots[i];
                slot.run.is_none() && !slot.done && slot.not_before.is_none_or(|t| t <= now)
            })
            .collect();
        if due.is_empty() || !self.volumes_ready(now).await {
            return;
        }
        for i in due {
            self.start(i).await;
        }
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

    fn node_facts(&self) -> NodeFacts {
        NodeFacts {
            host_ip: self.ctx.host_ip.clone(),
            // Guests share the node's network: the pod IP is the node's.
            pod_ip: self.ctx.host_ip.clone(),
            cpu_cores: crate::agent::cpus() as f64,
            memory_bytes: crate::agent::memory_kib() as f64 * 1024.0,
        }
    }

    async fn start(&mut self, i: usize) {
        let image_name = self.slots[i].spec.image.clone().unwrap_or_default();
        let (image, present) = match self.ensure_image(i, &image_name).await {
            Ok(found) => found,
            Err(ImageFailure::Pull(message)) => {
                return self.pull_failed(i, &image_name, message).await
            }
            Err(ImageFailure::NeverPull(message)) => {
                let events = [
                    (true, "ErrImageNeverPull", message.clone()),
                    (true, "Failed", "Error: ErrImageNeverPull".into()),
                ];
                return self
                    .retry_soon(i, "ErrImageNeverPull", message, &events)
                    .await;
            }
        };
        self.slots[i].pull_backoff = None;
        let pod = self.pod.clone();
        let restart = if self.slots[i].ran_before {
            self.slots[i].record.restart_count + 1
        } else {
            0
        };
        let config = match self.container_config(i, restart).await {
            Ok(c) => c,
            Err(StartError::Config(message)) => {
                let events = [(true, "Failed", format!("Error: {message}"))];
                return self
                    .retry_soon(i, "CreateContainerConfigError", message, &events)
                    .await;
            }
            Err(StartError::Create(message)) => return self.create_failed(i, message).await,
        };
        // Recorded once the container can start, not at every configuration retry.
        if present {
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
        let name = self.slots[i].spec.name.clone();
        let starting = std::time::Instant::now();
        match self.ctx.runtime.start(&image, config).await {
            Ok(run) => {
                let took = starting.elapsed();
                tracing::debug!(pod = pod_name(&pod), container = %name, ?took, "container started");
                let slot = &mut self.slots[i];
                if slot.ran_before {
                    slot.record.restart_count = restart;
                }
                slot.ran_before = true;
                slot.record.image_id = image.manifest_digest.clone();
                slot.record.container_id = format!("wasmtime://{}", run.id());
                slot.record.state = State::Running {
                    started_at: run.started_at(),
                };
                slot.not_before = None;
                self.ctx
                    .active_logs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(log_path.clone());
                let mut waiter = run.clone();
                slot.run = Some(run);
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
            Err(e) => self.create_failed(i, e.to_string()).await,
        }
    }

    /// Kubelet's image manager: uses the image in the store or pulls it, as the
    /// container's `imagePullPolicy` says, with kubelet's pull events. Also says whether
    /// the image was already present (no pull).
    async fn ensure_image(
        &self,
        i: usize,
        image: &str,
    ) -> Result<(ResolvedImage, bool), ImageFailure> {
        let present = self
            .ctx
            .images
            .resolve(image)
            .map_err(|e| ImageFailure::Pull(e.to_string()))?;
        // The API server defaults the policy; a pod from elsewhere gets the safe one.
        let policy = self.slots[i].spec.image_pull_policy.as_deref();
        let client = &self.ctx.client;
        match (policy, present) {
            (Some("Always"), _) => {}
            (_, Some(resolved)) => return Ok((resolved, true)),
            (Some("Never"), None) => {
                return Err(ImageFailure::NeverPull(format!(
                    "Container image \"{image}\" is not present with pull policy of Never"
                )))
            }
            _ => {}
        }
        client
            .record_event(
                &self.pod,
                false,
                "Pulling",
                &format!("Pulling image \"{image}\""),
            )
            .await;
        let started = std::time::Instant::now();
        let puller = Puller::new(self.ctx.images.clone(), &self.ctx.insecure_registries);
        match puller.pull(image, None).await {
            Ok(Pulled::Wasm { image: resolved, size }) => {
                let took = go_duration(started.elapsed());
                let message = format!(
                    "Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {size} bytes."
                );
                client
                    .record_event(&self.pod, false, "Pulled", &message)
                    .await;
                Ok((resolved, false))
            }
            // Until containerd runs container images on this node, they cannot run.
            Ok(Pulled::NotWasm { manifest_digest }) => Err(ImageFailure::Pull(format!(
                "failed to pull and unpack image \"{image}\": {manifest_digest} is a container image, and this node runs wasm artifacts only"
            ))),
            Err(e) => Err(ImageFailure::Pull(e.to_string())),
        }
    }

    async fn container_config(
        &self,
        i: usize,
        restart: i32,
    ) -> Result<ContainerConfig, StartError> {
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
        let mounts = match &self.volumes {
            Some(v) => v
                .mounts(spec)
                .map_err(|e| StartError::Create(e.to_string()))?,
            None => Vec::new(),
        };
        let uid = meta.uid.as_deref().unwrap_or_default();
        let path = container_log_path(
            &self.ctx.log_root,
            namespace,
            pod_name(&self.pod),
            uid,
            &spec.name,
            restart as u32,
        );
        let log = LogWriter::create(&path).map_err(|e| StartError::Create(e.to_string()))?;
        let mut argv = resolved.command;
        if argv.is_empty() {
            argv.push(spec.name.clone());
        }
        argv.extend(resolved.args);
        Ok(ContainerConfig {
            id: format!("{uid}-{}-{restart}", spec.name),
            argv,
            env: resolved.env,
            log,
            mounts,
        })
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
        let policy = self.policy;
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
                slot.record.state = State::Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                };
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
        self.publish().await;
    }

    async fn publish(&mut self) {
        let records: Vec<ContainerRecord> = self.slots.iter().map(|s| s.record.clone()).collect();
        let status = status::pod_status(&StatusInput {
            policy: self.policy,
            containers: &records,
            host_ip: &self.ctx.host_ip,
            pod_ip: &self.ctx.host_ip,
            start_time: self.start_time,
            previous: self.published.as_ref(),
            now: Utc::now(),
        });
        if self.published.as_ref() == Some(&status) {
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
