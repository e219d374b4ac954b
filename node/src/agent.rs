//! The node agent (kubelet's role): registers this machine as a Node, heartbeats through
//! its Lease in `kube-node-lease`, keeps its status fresh, and runs a pod worker for every
//! pod bound to it. Its housekeeping removes the OCI sandboxes of pods it no longer runs
//! (a pod deleted while the node was down gets no worker to remove them).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::sync::watch;

use crate::client::{ControlPlane, EventKind};
use crate::pod_worker::{self, NodeContext, WorkerHandle};
use crate::runtime::oci::Owner;

/// How often the node computes its status (kubelet's nodeStatusUpdateFrequency); it is
/// written only when it changed or [`STATUS_REPORT_EVERY`] passed, since the Lease is the
/// heartbeat.
const STATUS_EVERY: Duration = Duration::from_secs(10);
/// How often an unchanged status is written anyway (kubelet's nodeStatusReportFrequency).
const STATUS_REPORT_EVERY: Duration = Duration::from_secs(60);
/// How long the node's Lease holds by default (kubelet's nodeLeaseDurationSeconds); it is
/// renewed every quarter of it, as the kubelet does, so three renewals may fail in a row.
pub const DEFAULT_LEASE_DURATION_SECONDS: u64 = 40;
/// Pause before watching again after the pod watch ended.
const REWATCH: Duration = Duration::from_millis(200);
/// How often the node looks for sandboxes of pods it no longer runs (kubelet's
/// housekeeping); the first look is at start.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(10);

pub struct NodeAgent<C> {
    ctx: Arc<NodeContext<C>>,
    name: String,
    lease_duration_seconds: u64,
    max_pods: u32,
}

/// kubelet's default `--max-pods`.
pub const DEFAULT_MAX_PODS: u32 = 110;

/// Whether a status computed now differs from the one stored, heartbeat times aside: the
/// node lifecycle controller may have set conditions Unknown, which the node corrects at
/// once.
pub fn status_changed(stored: Option<&NodeStatus>, new: &NodeStatus) -> bool {
    let without_heartbeats = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    stored.map(without_heartbeats) != Some(without_heartbeats(new))
}

impl<C: ControlPlane> NodeAgent<C> {
    pub fn new(ctx: Arc<NodeContext<C>>, name: &str) -> Self {
        NodeAgent {
            ctx,
            name: name.into(),
            lease_duration_seconds: DEFAULT_LEASE_DURATION_SECONDS,
            max_pods: DEFAULT_MAX_PODS,
        }
    }

    /// The same agent offering room for `max_pods` pods (the node's `pods` capacity, which
    /// the scheduler fills up to; kubelet's `--max-pods`).
    pub fn with_max_pods(self, max_pods: u32) -> Self {
        NodeAgent { max_pods, ..self }
    }

    /// The same agent with Leases that hold for `seconds` (renewed every quarter of it).
    ///
    /// # Panics
    /// `run` panics if `seconds` is 0 (a renewal interval cannot be zero).
    pub fn with_lease_duration(self, seconds: u64) -> Self {
        NodeAgent {
            lease_duration_seconds: seconds,
            ..self
        }
    }

    /// Registers the node, then runs until `shutdown` turns true. Pod containers are
    /// stopped when the agent stops (their workers are dropped).
    pub async fn run(
        self,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), crate::client::ClientError> {
        self.ctx.client.register_node(self.node()).await?;
        self.ctx
            .client
            .update_node_status(&self.name, self.status(None))
            .await?;
        let started = Utc::now();
        let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
        // Workers of deleted pods, still stopping their containers: housekeeping leaves
        // their sandboxes to them (a force-deleted pod's containers still get their grace).
        let mut stopping: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut status = tokio::time::interval(STATUS_EVERY);
        let mut reported = Instant::now();
        let mut lease = tokio::time::interval(Duration::from_secs(self.lease_duration_seconds) / 4);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_EVERY);
        let mut housekeeper: Option<tokio::task::JoinHandle<()>> = None;
        'watch: loop {
            let mut pods = self.ctx.client.watch_pods(&self.name)?;
            loop {
                tokio::select! {
                    event = pods.next() => match event {
                        Some(Ok(e)) => self.dispatch(&mut workers, &mut stopping, e.kind, e.object),
                        Some(Err(e)) => tracing::warn!(error = %e, "undecodable pod event"),
                        None => {
                            tokio::time::sleep(REWATCH).await;
                            continue 'watch;
                        }
                    },
                    _ = status.tick() => {
                        match self.report_status(started, reported).await {
                            Ok(true) => reported = Instant::now(),
                            Ok(false) => {}
                            Err(e) => tracing::warn!(error = %e, "node status update failed"),
                        }
                        workers.retain(|_, w| !w.task.is_finished());
                        stopping.retain(|_, task| !task.is_finished());
                        self.reclaim_local_paths().await;
                    }
                    _ = housekeeping.tick() => {
                        // One pass at a time: a slow containerd must not pile them up.
                        if housekeeper.as_ref().is_none_or(|h| h.is_finished()) {
                            let running = workers.keys().chain(stopping.keys()).cloned().collect();
                            let pass = remove_orphaned_sandboxes(self.ctx.clone(), self.name.clone(), running);
                            housekeeper = Some(tokio::spawn(pass));
                        }
                    }
                    _ = lease.tick() => {
                        if let Err(e) = self.ctx.client.renew_lease(&self.name, self.lease_duration_seconds as i64).await {
                            tracing::warn!(error = %e, "lease renewal failed");
                        }
                    }
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
    }

    /// Removes the directories of local-path volumes that were deleted.
    async fn reclaim_local_paths(&self) {
        let root = &self.ctx.volume_root;
        match crate::volumes::claims::collect_garbage(&*self.ctx.client, root).await {
            Ok(removed) => {
                for path in removed {
                    tracing::info!(path = %path.display(), "removed a deleted local-path volume");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot reclaim local-path volumes"),
        }
    }

    /// Writes the node's status if it changed or was last written [`STATUS_REPORT_EVERY`]
    /// ago (kubelet's `tryUpdateNodeStatus`); says whether it wrote.
    async fn report_status(
        &self,
        started: chrono::DateTime<Utc>,
        reported: Instant,
    ) -> Result<bool, crate::client::ClientError> {
        let status = self.status(Some(started));
        let stored = self.ctx.client.get_node(&self.name).await?;
        let stored = stored.as_ref().and_then(|n| n.status.as_ref());
        if !status_changed(stored, &status) && reported.elapsed() < STATUS_REPORT_EVERY {
            return Ok(false);
        }
        self.ctx
            .client
            .update_node_status(&self.name, status)
            .await?;
        Ok(true)
    }

    fn dispatch(
        &self,
        workers: &mut HashMap<String, WorkerHandle>,
        stopping: &mut HashMap<String, tokio::task::JoinHandle<()>>,
        kind: EventKind,
        pod: k8s_openapi::api::core::v1::Pod,
    ) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        match kind {
            EventKind::Deleted => {
                // Dropping the handle's sender tells the worker the pod is gone.
                if let Some(worker) = workers.remove(&uid) {
                    stopping.insert(uid, worker.task);
                }
            }
            EventKind::Upsert => match workers.get(&uid) {
                Some(w) if !w.task.is_finished() => {
                    w.updates.send_replace(pod);
                }
                _ => {
                    tracing::debug!(pod = pod.metadata.name.as_deref(), "starting pod worker");
                    workers.insert(uid, pod_worker::spawn(self.ctx.clone(), pod));
                }
            },
        }
    }

    fn node(&self) -> Node {
        let labels = [
            ("kubernetes.io/hostname", self.name.as_str()),
            ("kubernetes.io/os", std::env::consts::OS),
            ("kubernetes.io/arch", arch()),
            ("beta.kubernetes.io/os", std::env::consts::OS),
            ("beta.kubernetes.io/arch", arch()),
            ("node-role.kubernetes.io/control-plane", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: None,
        }
    }

    fn status(&self, since: Option<chrono::DateTime<Utc>>) -> NodeStatus {
        let now = crate::status::time(Utc::now());
        let since = crate::status::time(since.unwrap_or_else(Utc::now));
        let condition = |kind: &str, ok: bool, reason: &str, message: &str| NodeCondition {
            type_: kind.into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(since.clone()),
        };
        let capacity: std::collections::BTreeMap<String, Quantity> = [
            ("cpu", cpus().to_string()),
            ("memory", format!("{}Ki", memory_kib())),
            ("pods", self.max_pods.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v)))
        .collect();
        NodeStatus {
            conditions: Some(vec![
                condition(
                    "MemoryPressure",
                    false,
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition(
                    "DiskPressure",
                    false,
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                condition(
                    "PIDPressure",
                    false,
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                condition(
                    "Ready",
                    true,
                    "KubeletReady",
                    "kubelet is posting ready status",
                ),
            ]),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: self.ctx.host_ip.clone(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: self.name.clone(),
                },
            ]),
            allocatable: Some(capacity.clone()),
            capacity: Some(capacity),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: arch().into(),
                operating_system: std::env::consts::OS.into(),
                kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
                os_image: os_image(),
                machine_id: read_trimmed("/etc/machine-id"),
                system_uuid: read_trimmed("/etc/machine-id"),
                boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
                container_runtime_version: "wasmtime://48.0".into(),
                kubelet_version: format!("v1.33.0-wkube+{}", env!("CARGO_PKG_VERSION")),
                kube_proxy_version: String::new(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Kubernetes names architectures the Go way.
/// Kubelet's housekeeping for OCI pods: stops and removes the sandboxes (with their
/// containers) that this node made for pods it no longer runs and that are gone from the
/// API or bound elsewhere. A pod deleted while its node was down leaves them behind, and a
/// restarted node gets no event for it. `running` holds the uids of the pods with a worker,
/// which handles its own sandbox.
async fn remove_orphaned_sandboxes<C: ControlPlane>(
    ctx: Arc<NodeContext<C>>,
    node: String,
    running: HashSet<String>,
) {
    // A node that never ran containerd has no sandboxes: do not start it for nothing.
    let Some(oci) = ctx.oci.as_ref().filter(|oci| oci.used_before()) else {
        return;
    };
    let sandboxes = match oci.node_sandboxes(&node).await {
        Ok(sandboxes) => sandboxes,
        Err(e) => return tracing::warn!(error = %e, "housekeeping: cannot list sandboxes"),
    };
    for (id, owner) in sandboxes {
        // The pool's own are its business.
        let Owner::Pod(meta) = owner else {
            continue;
        };
        if running.contains(&meta.uid) {
            continue;
        }
        // A pod bound here whose worker is not there yet (the node is starting) keeps it.
        match ctx.client.get_pod(&meta.namespace, &meta.name).await {
            Ok(Some(pod))
                if pod.metadata.uid.as_deref() == Some(meta.uid.as_str())
                    && pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
                        == Some(node.as_str()) =>
            {
                continue
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(pod = %meta.name, error = %e, "housekeeping: cannot read pod");
                continue;
            }
        }
        match oci.remove_sandbox(&id).await {
            Ok(()) => tracing::info!(
                pod = %format!("{}/{}", meta.namespace, meta.name),
                uid = %meta.uid,
                "removed the sandbox of a pod this node no longer runs"
            ),
            Err(e) => {
                tracing::warn!(sandbox = %id, error = %e, "housekeeping: cannot remove sandbox")
            }
        }
    }
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(crate) fn memory_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| std::env::consts::OS.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(ready: &str, heartbeat: i64) -> NodeStatus {
        let at = |s: i64| {
            Some(crate::status::time(
                chrono::DateTime::from_timestamp(s, 0).unwrap_or_default(),
            ))
        };
        NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: ready.into(),
                last_heartbeat_time: at(heartbeat),
                last_transition_time: at(0),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_changed_status_is_written_before_the_report_interval() {
        assert!(status_changed(None, &status("True", 10)));
        assert!(!status_changed(
            Some(&status("True", 10)),
            &status("True", 20)
        ));
        assert!(
            status_changed(Some(&status("Unknown", 10)), &status("True", 20)),
            "set Unknown by the node lifecycle controller: corrected at once"
        );
    }
}
