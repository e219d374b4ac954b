//! `kubectl exec` and `kubectl attach` for OCI containers: the node finds the container in
//! the pod's status and asks containerd (CRI `Exec` / `Attach`) for a URL on its
//! streaming server, which the API server then proxies the client's connection to.
//! WASI components have no process to exec into; they get a clear refusal.

use std::sync::Arc;

use control::api::errors::ApiError;
use control::api::streams::{PodStreams, StreamKind, StreamRequest};
use futures::future::BoxFuture;
use serde_json::Value;

use super::{failed, ContainerdError};
use crate::runtime::oci::OciRuntime;

/// The prefix of OCI containers' ids in pod status.
pub const CONTAINER_ID_PREFIX: &str = "containerd://";

/// Streams of the containers the node's OCI runtime runs.
pub struct ContainerStreams {
    oci: Arc<OciRuntime>,
}

impl ContainerStreams {
    pub fn new(oci: Arc<OciRuntime>) -> Self {
        ContainerStreams { oci }
    }

    async fn url(
        &self,
        id: String,
        kind: StreamKind,
        r: &StreamRequest,
    ) -> Result<String, ContainerdError> {
        let mut cri = self.oci.cri().await?;
        Ok(match kind {
            StreamKind::Exec => {
                let request = cri::v1::ExecRequest {
                    container_id: id,
                    cmd: r.command.clone(),
                    tty: r.tty,
                    stdin: r.stdin,
                    stdout: r.stdout,
                    stderr: r.stderr,
                };
                cri.runtime
                    .exec(request)
                    .await
                    .map_err(failed("Exec"))?
                    .into_inner()
                    .url
            }
            StreamKind::Attach => {
                let request = cri::v1::AttachRequest {
                    container_id: id,
                    stdin: r.stdin,
                    tty: r.tty,
                    stdout: r.stdout,
                    stderr: r.stderr,
                };
                cri.runtime
                    .attach(request)
                    .await
                    .map_err(failed("Attach"))?
                    .into_inner()
                    .url
            }
        })
    }
}

/// The CRI id of `container` of `pod` if it runs in containerd now.
pub fn running_container_id(pod: &Value, container: &str) -> Result<String, ApiError> {
    let status = ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|k| pod["status"][k].as_array())
        .flatten()
        .find(|s| s["name"] == container);
    let not_found = || ApiError::BadRequest(format!("container not found (\"{container}\")"));
    let Some(status) = status.filter(|s| s["state"].get("running").is_some()) else {
        return Err(not_found());
    };
    let id = status["containerID"].as_str().unwrap_or_default();
    match id.strip_prefix(CONTAINER_ID_PREFIX) {
        Some(id) if !id.is_empty() => Ok(id.to_string()),
        _ if id.contains("://") => Err(ApiError::BadRequest(format!(
            "container \"{container}\" is a WebAssembly component: it runs no process that exec or attach could reach"
        ))),
        _ => Err(not_found()),
    }
}

impl PodStreams for ContainerStreams {
    fn stream_url<'a>(
        &'a self,
        pod: &'a Value,
        kind: StreamKind,
        request: &'a StreamRequest,
    ) -> BoxFuture<'a, Result<String, ApiError>> {
        Box::pin(async move {
            let id = running_container_id(pod, &request.container)?;
            self.url(id, kind, request)
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_running_oci_containers_stream() {
        let pod = json!({"status": {"containerStatuses": [
            {"name": "web", "containerID": "containerd://abc", "state": {"running": {}}},
            {"name": "guest", "containerID": "wasmtime://u-guest-0", "state": {"running": {}}},
            {"name": "done", "containerID": "containerd://def", "state": {"terminated": {"exitCode": 0}}},
        ]}});
        assert_eq!(running_container_id(&pod, "web").unwrap(), "abc");
        let refusal = |c: &str| running_container_id(&pod, c).unwrap_err().to_string();
        assert!(refusal("guest").contains("WebAssembly component"));
        assert!(refusal("done").contains("container not found (\"done\")"));
        assert!(refusal("nope").contains("container not found"));
    }
}
