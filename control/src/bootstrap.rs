//! Objects every cluster has from its first start: the system namespaces, the
//! `wasmtime` RuntimeClass and the default `local-path` StorageClass.

use serde_json::json;

use crate::api::{resources, Api, ApiError};

/// Where nodes keep their heartbeat Leases, one named after each node.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

pub const NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "kube-public",
    NODE_LEASE_NAMESPACE,
];

/// The RuntimeClass a pod may name to ask for the in-process WASI runtime.
pub const WASM_RUNTIME_CLASS: &str = "wasmtime";

/// Creates whatever of the built-in objects is missing; existing ones are left as they are.
pub async fn ensure(api: &Api) -> Result<(), ApiError> {
    let namespaces = resources::find("", "v1", "namespaces")
        .ok_or_else(|| ApiError::Internal("namespaces unknown".into()))?;
    for ns in NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        create_if_missing(api.create(namespaces, None, obj, false).await)?;
    }
    let rc = resources::find("node.k8s.io", "v1", "runtimeclasses")
        .ok_or_else(|| ApiError::Internal("runtimeclasses unknown".into()))?;
    let obj = json!({
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": WASM_RUNTIME_CLASS},
        "handler": WASM_RUNTIME_CLASS,
    });
    create_if_missing(api.create(rc, None, obj, false).await)?;
    let classes = resources::find("storage.k8s.io", "v1", "storageclasses")
        .ok_or_else(|| ApiError::Internal("storageclasses unknown".into()))?;
    let local_path = crate::storage_class::local_path_class();
    create_if_missing(api.create(classes, None, local_path, false).await)
}

fn create_if_missing<T>(r: Result<T, ApiError>) -> Result<(), ApiError> {
    match r {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
