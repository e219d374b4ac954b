//! Pod sandboxes and their containers over CRI: the calls kubelet makes, in its order
//! (run the sandbox, create and start each container in it, stop and remove them, then the
//! sandbox). The configurations are built from what the pod worker knows of the pod.

use std::collections::HashMap;
use std::path::PathBuf;

use cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatus, ImageSpec, KeyValue, LinuxContainerConfig,
    LinuxContainerResources, Mount, PodSandboxConfig, PodSandboxMetadata,
};

use super::{failed, ContainerdError, CriClient};

/// The label every sandbox and container carries with its pod's uid, as kubelet sets it: a
/// restarted node finds its pods' sandboxes and containers by it.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// The label with the node a sandbox was made by: housekeeping removes only its own node's,
/// also on a containerd that other nodes (or a kubelet) use.
pub const NODE_LABEL: &str = "io.wkube.node";
/// The label with the container's name in the pod spec.
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// Who a sandbox is for.
#[derive(Debug, Clone)]
pub struct PodIdentity {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// The node the pod is bound to, whose sandbox this is ([`NODE_LABEL`]).
    pub node: String,
    /// How many sandboxes the pod had before this one.
    pub attempt: u32,
    /// `spec.shareProcessNamespace`: the pod's containers see each other's processes.
    pub share_process_namespace: bool,
    /// The pod's hostname ([`pod_hostname`]).
    pub hostname: String,
}

/// Kubelet's hostname for a pod: `spec.hostname`, else its name, cut to 63 bytes (the
/// most a DNS label, and Linux, take) without a trailing `-` or `.`.
pub fn pod_hostname(name: &str, spec_hostname: Option<&str>) -> String {
    let hostname = spec_hostname.filter(|h| !h.is_empty()).unwrap_or(name);
    let cut: String = hostname.chars().take(63).collect();
    cut.trim_end_matches(['-', '.']).to_string()
}

/// The pod's namespaces as kubelet asks for them: network and IPC shared by the pod, and
/// the process namespace each container's own unless the pod shares it (the CRI's default
/// is to share it; Kubernetes' is not to).
fn namespaces(share_process_namespace: bool) -> cri::v1::NamespaceOption {
    use cri::v1::NamespaceMode;
    let pid = if share_process_namespace {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    cri::v1::NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: pid as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// The sandbox configuration of a pod; containerd writes the containers' CRI log files
/// under `log_directory`.
pub fn sandbox_config(pod: &PodIdentity, log_directory: PathBuf) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            namespace: pod.namespace.clone(),
            attempt: pod.attempt,
        }),
        hostname: pod.hostname.clone(),
        log_directory: log_directory.display().to_string(),
        labels: HashMap::from([
            (POD_UID_LABEL.to_string(), pod.uid.clone()),
            (NODE_LABEL.to_string(), pod.node.clone()),
            ("io.kubernetes.pod.name".to_string(), pod.name.clone()),
            (
                "io.kubernetes.pod.namespace".to_string(),
                pod.namespace.clone(),
            ),
        ]),
        linux: Some(cri::v1::LinuxPodSandboxConfig {
            security_context: Some(cri::v1::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(pod.share_process_namespace)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What one container runs.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    /// How many times this container ran before in this pod.
    pub attempt: u32,
    pub image: String,
    /// Replaces the image's entrypoint when not empty (Kubernetes' `command`).
    pub command: Vec<String>,
    /// Replaces the image's cmd when not empty (Kubernetes' `args`).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    /// The CRI log file, relative to the sandbox's log directory.
    pub log_path: String,
    /// Host directories bind-mounted into the container.
    pub mounts: Vec<Mount>,
    /// cgroup limits (memory, cpu quota and shares); zero fields mean unlimited.
    pub resources: LinuxContainerResources,
    /// The pod's uid, for [`POD_UID_LABEL`].
    pub pod_uid: String,
    /// As the pod's [`PodIdentity::share_process_namespace`].
    pub share_process_namespace: bool,
    /// The container's `stdin`, `stdinOnce` and `tty`: what `kubectl attach` reaches.
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

fn container_config(spec: &ContainerSpec) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: spec.name.clone(),
            attempt: spec.attempt,
        }),
        image: Some(ImageSpec {
            image: spec.image.clone(),
            ..Default::default()
        }),
        command: spec.command.clone(),
        args: spec.args.clone(),
        working_dir: spec.working_dir.clone(),
        envs: spec
            .env
            .iter()
            .map(|(key, value)| KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        log_path: spec.log_path.clone(),
        mounts: spec.mounts.clone(),
        stdin: spec.stdin,
        stdin_once: spec.stdin_once,
        tty: spec.tty,
        labels: HashMap::from([
            (POD_UID_LABEL.to_string(), spec.pod_uid.clone()),
            (CONTAINER_NAME_LABEL.to_string(), spec.name.clone()),
        ]),
        linux: Some(LinuxContainerConfig {
            resources: Some(spec.resources.clone()),
            security_context: Some(cri::v1::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces(spec.share_process_namespace)),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

impl CriClient {
    /// Creates and starts a pod's sandbox (namespaces and network); returns its id.
    pub async fn run_sandbox(
        &mut self,
        config: &PodSandboxConfig,
    ) -> Result<String, ContainerdError> {
        let request = cri::v1::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        Ok(self
            .runtime
            .run_pod_sandbox(request)
            .await
            .map_err(failed("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id)
    }

    /// The sandbox's IP address on the pod network.
    pub async fn sandbox_ip(&mut self, id: &str) -> Result<Option<String>, ContainerdError> {
        let request = cri::v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        Ok(self
            .runtime
            .pod_sandbox_status(request)
            .await
            .map_err(failed("PodSandboxStatus"))?
            .into_inner()
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty()))
    }

    /// Every sandbox containerd has, in any state.
    pub async fn sandboxes(&mut self) -> Result<Vec<cri::v1::PodSandbox>, ContainerdError> {
        self.list_sandboxes(None).await
    }

    async fn list_sandboxes(
        &mut self,
        filter: Option<cri::v1::PodSandboxFilter>,
    ) -> Result<Vec<cri::v1::PodSandbox>, ContainerdError> {
        Ok(self
            .runtime
            .list_pod_sandbox(cri::v1::ListPodSandboxRequest { filter })
            .await
            .map_err(failed("ListPodSandbox"))?
            .into_inner()
            .items)
    }

    /// The sandboxes, in any state, that the node `node` made.
    pub async fn node_sandboxes(
        &mut self,
        node: &str,
    ) -> Result<Vec<cri::v1::PodSandbox>, ContainerdError> {
        self.list_sandboxes(Some(cri::v1::PodSandboxFilter {
            label_selector: HashMap::from([(NODE_LABEL.to_string(), node.to_string())]),
            ..Default::default()
        }))
        .await
    }

    /// The ready sandboxes of the pod with this uid.
    pub async fn pod_sandboxes(
        &mut self,
        uid: &str,
    ) -> Result<Vec<cri::v1::PodSandbox>, ContainerdError> {
        self.list_sandboxes(Some(cri::v1::PodSandboxFilter {
            state: Some(cri::v1::PodSandboxStateValue {
                state: cri::v1::PodSandboxState::SandboxReady as i32,
            }),
            label_selector: HashMap::from([(POD_UID_LABEL.to_string(), uid.to_string())]),
            ..Default::default()
        }))
        .await
    }

    /// Whether the sandbox exists and is ready.
    pub async fn sandbox_ready(&mut self, id: &str) -> Result<bool, ContainerdError> {
        let request = cri::v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        match self.runtime.pod_sandbox_status(request).await {
            Ok(status) => Ok(status
                .into_inner()
                .status
                .is_some_and(|s| s.state == cri::v1::PodSandboxState::SandboxReady as i32)),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
            Err(status) => Err(failed("PodSandboxStatus")(status)),
        }
    }

    /// The pid of the sandbox's pause process (which holds the pod's namespaces).
    pub async fn sandbox_pid(&mut self, id: &str) -> Result<Option<u32>, ContainerdError> {
        let request = cri::v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        };
        let info = self
            .runtime
            .pod_sandbox_status(request)
            .await
            .map_err(failed("PodSandboxStatus"))?
            .into_inner()
            .info;
        // containerd's verbose status: {"info": "{\"pid\": 1234, ...}"}.
        Ok(info
            .get("info")
            .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
            .and_then(|i| i.get("pid")?.as_u64())
            .and_then(|pid| u32::try_from(pid).ok())
            .filter(|pid| *pid > 0))
    }

    /// Stops the sandbox (every container in it, then its network) and removes it.
    pub async fn remove_sandbox(&mut self, id: &str) -> Result<(), ContainerdError> {
        self.runtime
            .stop_pod_sandbox(cri::v1::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(failed("StopPodSandbox"))?;
        self.runtime
            .remove_pod_sandbox(cri::v1::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(failed("RemovePodSandbox"))?;
        Ok(())
    }

    /// Creates a container in a sandbox and starts it; returns its id.
    pub async fn start_container(
        &mut self,
        sandbox_id: &str,
        sandbox: &PodSandboxConfig,
        spec: &ContainerSpec,
    ) -> Result<String, ContainerdError> {
        let request = cri::v1::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(container_config(spec)),
            sandbox_config: Some(sandbox.clone()),
        };
        let id = self
            .runtime
            .create_container(request)
            .await
            .map_err(failed("CreateContainer"))?
            .into_inner()
            .container_id;
        self.runtime
            .start_container(cri::v1::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .map_err(failed("StartContainer"))?;
        Ok(id)
    }

    /// The exited containers of a sandbox named `name` (in the pod spec), oldest first.
    pub async fn exited_containers(
        &mut self,
        sandbox_id: &str,
        name: &str,
    ) -> Result<Vec<cri::v1::Container>, ContainerdError> {
        let request = cri::v1::ListContainersRequest {
            filter: Some(cri::v1::ContainerFilter {
                pod_sandbox_id: sandbox_id.into(),
                state: Some(cri::v1::ContainerStateValue {
                    state: cri::v1::ContainerState::ContainerExited as i32,
                }),
                label_selector: HashMap::from([(
                    CONTAINER_NAME_LABEL.to_string(),
                    name.to_string(),
                )]),
                ..Default::default()
            }),
        };
        let mut containers = self
            .runtime
            .list_containers(request)
            .await
            .map_err(failed("ListContainers"))?
            .into_inner()
            .containers;
        containers.sort_by_key(|c| c.created_at);
        Ok(containers)
    }

    /// Removes a container that no longer runs.
    pub async fn remove_container(&mut self, id: &str) -> Result<(), ContainerdError> {
        self.runtime
            .remove_container(cri::v1::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(failed("RemoveContainer"))?;
        Ok(())
    }

    pub async fn container_status(&mut self, id: &str) -> Result<ContainerStatus, ContainerdError> {
        let request = cri::v1::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        self.runtime
            .container_status(request)
            .await
            .map_err(failed("ContainerStatus"))?
            .into_inner()
            .status
            .ok_or_else(|| ContainerdError::Cri {
                call: "ContainerStatus",
                status: tonic::Status::not_found(format!("no status for container {id}")),
            })
    }

    /// Stops a container: SIGTERM (or the image's stop signal), then SIGKILL after
    /// `grace_seconds`.
    pub async fn stop_container(
        &mut self,
        id: &str,
        grace_seconds: i64,
    ) -> Result<(), ContainerdError> {
        self.runtime
            .stop_container(cri::v1::StopContainerRequest {
                container_id: id.into(),
                timeout: grace_seconds,
            })
            .await
            .map_err(failed("StopContainer"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pods_hostname_is_kubelets() {
        assert_eq!(pod_hostname("web-0", None), "web-0");
        assert_eq!(pod_hostname("web-0", Some("front")), "front");
        assert_eq!(pod_hostname("web-0", Some("")), "web-0");
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        assert_eq!(pod_hostname(&long, None), "a".repeat(62));
    }
}
