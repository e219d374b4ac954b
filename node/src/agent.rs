//! The node agent (kubelet's role): registers this machine as a Node, heartbeats through
//! its Lease in `kube-node-lease`, keeps its status fresh, and runs a pod worker for every
//! pod bound to it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

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

/// How often the node writes its status (kubelet's nodeStatusUpdateFrequency).
const STATUS_EVERY: Duration = Duration::from_secs(10);
/// How long the node's Lease holds (kubelet's nodeLeaseDurationSeconds); it is renewed
/// every quarter of it, as the kubelet does, so three renewals may fail in a row.
const LEASE_DURATION_SECONDS: u64 = 40;
const LEASE_RENEW: Duration = Duration::from_secs(LEASE_DURATION_SECONDS / 4);
/// Pause before watching again after the pod watch ended.
const REWATCH: Duration = Duration::from_millis(200);

pub struct NodeAgent<C> {
    ctx: Arc<NodeContext<C>>,
    name: String,
}

impl<C: ControlPlane> NodeAgent<C> {
    pub fn new(ctx: Arc<NodeContext<C>>, name: &str) -> Self {
        NodeAgent {
            ctx,
            name: name.into(),
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
        let mut status = tokio::time::interval(STATUS_EVERY);
        let mut lease = tokio::time::interval(LEASE_RENEW);
        'watch: loop {
            let mut pods = self.ctx.client.watch_pods(&self.name)?;
            loop {
                tokio::select! {
                    event = pods.next() => match event {
                        Some(Ok(e)) => self.dispatch(&mut workers, e.kind, e.object),
                        Some(Err(e)) => tracing::warn!(error = %e, "undecodable pod event"),
                        None => {
                            tokio::time::sleep(REWATCH).await;
                            continue 'watch;
                        }
                    },
                    _ = status.tick() => {
                        if let Err(e) = self.ctx.client.update_node_status(&self.name, self.status(Some(started))).await {
                            tracing::warn!(error = %e, "node status update failed");
                        }
                        workers.retain(|_, w| !w.task.is_finished());
                    }
                    _ = lease.tick() => {
                        if let Err(e) = self.ctx.client.renew_lease(&self.name, LEASE_DURATION_SECONDS as i64).await {
                            tracing::warn!(error = %e, "lease renewal failed");
                        }
                    }
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
    }

    fn dispatch(
        &self,
        workers: &mut HashMap<String, WorkerHandle>,
        kind: EventKind,
        pod: k8s_openapi::api::core::v1::Pod,
    ) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        match kind {
            EventKind::Deleted => {
                // Dropping the handle tells the worker the pod is gone.
                workers.remove(&uid);
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
            ("pods", "110".to_string()),
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
