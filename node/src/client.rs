//! The node agent's only way to the control plane. In `wkube server` it is served
//! in-process by [`InProcess`]; a remote agent will implement the same trait over QUIC.

use std::future::Future;

use std::marker::PhantomData;

use k8s_openapi::api::core::v1::{
    ConfigMap, Node, NodeStatus, PersistentVolume, PersistentVolumeClaim, Pod, PodStatus, Secret,
};
use serde_json::{json, Value};

use chrono::{SecondsFormat, Utc};
use control::api::objects::{DeleteOptions, ListOptions, Part, Watch};
use control::api::{resources, Api, ApiError};
use control::bootstrap::NODE_LEASE_NAMESPACE;
use control::events::{EventRecorder, EventType};
use control::selectors::FieldSelector;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("object does not decode as {kind}: {source}")]
    Decode {
        kind: &'static str,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Added or changed (including "marked for deletion").
    Upsert,
    /// Gone from the API.
    Deleted,
}

pub struct ObjectEvent<T> {
    pub kind: EventKind,
    pub object: T,
}

/// A stream of changes to the objects a watch selects; ends on error (then re-watch).
pub struct ObjectWatch<T> {
    inner: Watch,
    kind: &'static str,
    _object: PhantomData<fn() -> T>,
}

impl<T: serde::de::DeserializeOwned> ObjectWatch<T> {
    fn new(inner: Watch, kind: &'static str) -> Self {
        ObjectWatch {
            inner,
            kind,
            _object: PhantomData,
        }
    }

    pub async fn next(&mut self) -> Option<Result<ObjectEvent<T>, ClientError>> {
        let e = self.inner.next().await?;
        let kind = match e.kind {
            "ERROR" => return None,
            "DELETED" => EventKind::Deleted,
            _ => EventKind::Upsert,
        };
        Some(decode::<T>(self.kind, e.object).map(|object| ObjectEvent { kind, object }))
    }
}

pub type PodWatch = ObjectWatch<Pod>;

fn decode<T: serde::de::DeserializeOwned>(kind: &'static str, v: Value) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|source| ClientError::Decode { kind, source })
}

pub trait ControlPlane: Send + Sync + 'static {
    /// Current pods bound to `node` (as ADDED events) and then their changes.
    fn watch_pods(&self, node: &str) -> Result<PodWatch, ClientError>;
    /// A pod of `namespace`, `None` when there is none of that name.
    fn get_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Pod>, ClientError>> + Send;
    /// A ConfigMap of `namespace`, `None` when there is none of that name.
    fn get_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<ConfigMap>, ClientError>> + Send;
    /// A Secret of `namespace`, `None` when there is none of that name. Its data stays in
    /// memory: nothing of it is written to the node's disk.
    fn get_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Secret>, ClientError>> + Send;
    /// A PersistentVolumeClaim of `namespace`, `None` when there is none of that name.
    fn get_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<PersistentVolumeClaim>, ClientError>> + Send;
    /// A PersistentVolume, `None` when there is none of that name.
    fn get_volume(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<PersistentVolume>, ClientError>> + Send;
    /// The ConfigMap (as ADDED if it exists) and then its changes.
    fn watch_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ObjectWatch<ConfigMap>, ClientError>;
    /// The Secret (as ADDED if it exists) and then its changes.
    fn watch_secret(&self, namespace: &str, name: &str)
        -> Result<ObjectWatch<Secret>, ClientError>;
    /// Writes a pod's status; the pod's uid must still match (a recreated pod of the same
    /// name is another pod).
    fn update_pod_status(
        &self,
        pod: &Pod,
        status: PodStatus,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
    /// Removes a pod whose containers have all stopped (the final step of graceful deletion).
    fn finish_pod_deletion(
        &self,
        pod: &Pod,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
    /// Creates the Node object, or takes over an existing one of the same name.
    fn register_node(&self, node: Node) -> impl Future<Output = Result<(), ClientError>> + Send;
    /// The Node named `name`, `None` when there is none.
    fn get_node(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Node>, ClientError>> + Send;
    fn update_node_status(
        &self,
        name: &str,
        status: NodeStatus,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
    /// Creates or renews the node's heartbeat Lease (`kube-node-lease/<node>`, owned by
    /// its Node): held by the node for `duration_seconds` from now.
    fn renew_lease(
        &self,
        node: &str,
        duration_seconds: i64,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
    fn record_event(
        &self,
        pod: &Pod,
        warning: bool,
        reason: &str,
        message: &str,
    ) -> impl Future<Output = ()> + Send;
}

/// The control plane of the same process.
pub struct InProcess {
    api: Api,
    events: EventRecorder,
}

impl InProcess {
    pub fn new(api: Api, node_name: &str) -> Self {
        let events = EventRecorder::new(api.clone(), "kubelet", Some(node_name));
        InProcess { api, events }
    }
}

impl InProcess {
    fn get_named<T: serde::de::DeserializeOwned>(
        &self,
        plural: &str,
        kind: &'static str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<T>, ClientError> {
        match self.api.get(res(plural)?, namespace, name) {
            Ok(v) => decode(kind, v).map(Some),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn watch_named<T: serde::de::DeserializeOwned>(
        &self,
        plural: &str,
        kind: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<ObjectWatch<T>, ClientError> {
        let selector = FieldSelector::parse(&format!("metadata.name={name}"))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let opts = ListOptions {
            field_selector: Some(selector),
            ..Default::default()
        };
        let watch = self.api.watch(res(plural)?, Some(namespace), opts)?;
        Ok(ObjectWatch::new(watch, kind))
    }
}

fn res(plural: &str) -> Result<&'static resources::ResourceInfo, ClientError> {
    resources::find("", "v1", plural)
        .ok_or_else(|| ApiError::Internal(format!("{plural} unknown")).into())
}

fn meta(pod: &Pod) -> (Option<&str>, &str, Option<&str>) {
    (
        pod.metadata.namespace.as_deref(),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref(),
    )
}

impl ControlPlane for InProcess {
    fn watch_pods(&self, node: &str) -> Result<PodWatch, ClientError> {
        let selector = FieldSelector::parse(&format!("spec.nodeName={node}"))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let opts = ListOptions {
            field_selector: Some(selector),
            ..Default::default()
        };
        Ok(PodWatch::new(
            self.api.watch(res("pods")?, None, opts)?,
            "Pod",
        ))
    }

    async fn get_pod(&self, namespace: &str, name: &str) -> Result<Option<Pod>, ClientError> {
        self.get_named("pods", "Pod", Some(namespace), name)
    }

    async fn get_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ClientError> {
        self.get_named("configmaps", "ConfigMap", Some(namespace), name)
    }

    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ClientError> {
        self.get_named("secrets", "Secret", Some(namespace), name)
    }

    async fn get_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, ClientError> {
        let kind = "PersistentVolumeClaim";
        self.get_named("persistentvolumeclaims", kind, Some(namespace), name)
    }

    async fn get_volume(&self, name: &str) -> Result<Option<PersistentVolume>, ClientError> {
        self.get_named("persistentvolumes", "PersistentVolume", None, name)
    }

    fn watch_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ObjectWatch<ConfigMap>, ClientError> {
        self.watch_named("configmaps", "ConfigMap", namespace, name)
    }

    fn watch_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ObjectWatch<Secret>, ClientError> {
        self.watch_named("secrets", "Secret", namespace, name)
    }

    async fn update_pod_status(&self, pod: &Pod, status: PodStatus) -> Result<(), ClientError> {
        let (ns, name, uid) = meta(pod);
        let status = serde_json::to_value(status).map_err(|source| ClientError::Decode {
            kind: "PodStatus",
            source,
        })?;
        let uid = uid.map(str::to_string);
        self.api
            .update_with(res("pods")?, ns, name, Part::Status, |current| {
                if current["metadata"]["uid"].as_str() != uid.as_deref() {
                    return Ok(None);
                }
                if current["status"] == status {
                    return Ok(None);
                }
                let mut next = current.clone();
                next["status"] = status.clone();
                Ok(Some(next))
            })
            .await?;
        Ok(())
    }

    async fn finish_pod_deletion(&self, pod: &Pod) -> Result<(), ClientError> {
        let (ns, name, uid) = meta(pod);
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            precondition_uid: uid.map(str::to_string),
            ..Default::default()
        };
        match self.api.delete(res("pods")?, ns, name, &opts).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn register_node(&self, node: Node) -> Result<(), ClientError> {
        let nodes = res("nodes")?;
        let name = node.metadata.name.clone().unwrap_or_default();
        let obj = serde_json::to_value(&node).map_err(|source| ClientError::Decode {
            kind: "Node",
            source,
        })?;
        match self.api.create(nodes, None, obj.clone(), false).await {
            Ok(_) => Ok(()),
            Err(ApiError::AlreadyExists { .. }) => {
                // Keep what others set (labels, taints, spec) and take over the status.
                self.api
                    .update_with(nodes, None, &name, Part::Main, |current| {
                        let mut next = current.clone();
                        for (k, v) in obj["metadata"]["labels"].as_object().into_iter().flatten() {
                            next["metadata"]["labels"][k] = v.clone();
                        }
                        Ok(Some(next).filter(|n| n != current))
                    })
                    .await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn get_node(&self, name: &str) -> Result<Option<Node>, ClientError> {
        match self.api.get(res("nodes")?, None, name) {
            Ok(v) => decode("Node", v).map(Some),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn update_node_status(&self, name: &str, status: NodeStatus) -> Result<(), ClientError> {
        let status = serde_json::to_value(status).map_err(|source| ClientError::Decode {
            kind: "NodeStatus",
            source,
        })?;
        self.api
            .update_with(res("nodes")?, None, name, Part::Status, |current| {
                let mut next = current.clone();
                next["status"] = status.clone();
                Ok(Some(next))
            })
            .await?;
        Ok(())
    }

    async fn renew_lease(&self, node: &str, duration_seconds: i64) -> Result<(), ClientError> {
        let leases = resources::find("coordination.k8s.io", "v1", "leases")
            .ok_or_else(|| ApiError::Internal("leases unknown".into()))?;
        // The kubelet's MicroTime: heartbeats closer than a second apart still differ.
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let spec = json!({"holderIdentity": node, "leaseDurationSeconds": duration_seconds, "renewTime": now});
        let renewed = self
            .api
            .update_with(
                leases,
                Some(NODE_LEASE_NAMESPACE),
                node,
                Part::Main,
                |current| {
                    let mut next = current.clone();
                    for (k, v) in spec.as_object().into_iter().flatten() {
                        next["spec"][k] = v.clone();
                    }
                    Ok(Some(next))
                },
            )
            .await;
        match renewed {
            Err(ApiError::NotFound { .. }) => {}
            other => return other.map(drop).map_err(Into::into),
        }
        let owner = self.api.get(res("nodes")?, None, node)?;
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": node,
                "namespace": NODE_LEASE_NAMESPACE,
                "ownerReferences": [{
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": node,
                    "uid": owner["metadata"]["uid"],
                }],
            },
            "spec": spec,
        });
        match self
            .api
            .create(leases, Some(NODE_LEASE_NAMESPACE), lease, false)
            .await
        {
            // Created meanwhile by an earlier renewal: this one's time is only a little newer.
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn record_event(&self, pod: &Pod, warning: bool, reason: &str, message: &str) {
        let mut obj = serde_json::to_value(pod).unwrap_or_else(|_| json!({}));
        obj["kind"] = json!("Pod");
        obj["apiVersion"] = json!("v1");
        let kind = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        self.events.record(&obj, kind, reason, message).await;
    }
}
