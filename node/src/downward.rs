//! The downward API: a pod's own fields (`fieldRef`) and its containers' resources
//! (`resourceFieldRef`) as text, for environment variables and `downwardAPI` volumes.
//! Pure: the caller passes the pod and what the node knows (addresses, capacity).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownwardError {
    /// Kubelet's wording (`podFieldSelectorRuntimeValue`).
    #[error("unsupported fieldPath: {0}")]
    UnsupportedField(String),
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    #[error("container {0} not found")]
    NoContainer(String),
    #[error("invalid quantity {0:?}")]
    Quantity(String),
}

/// The node-side facts the downward API exposes besides the pod object itself.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub host_ip: String,
    pub pod_ip: String,
    /// Allocatable CPU in cores: a container's `limits.cpu` when it sets none.
    pub cpu_cores: f64,
    /// Allocatable memory in bytes: a container's `limits.memory` when it sets none.
    pub memory_bytes: f64,
}

/// The value of `fieldRef.fieldPath` for `pod`. `metadata.labels`/`metadata.annotations`
/// (whole maps) are volume-only in Kubernetes; validation keeps them out of `env`.
pub fn field(
    pod: &Pod,
    node: &NodeFacts,
    sel: &ObjectFieldSelector,
) -> Result<String, DownwardError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = sel.field_path.as_str();
    let text = |s: Option<&String>| s.cloned().unwrap_or_default();
    if let Some(key) = subscript(path, "metadata.labels") {
        return Ok(text(meta.labels.as_ref().and_then(|m| m.get(key))));
    }
    if let Some(key) = subscript(path, "metadata.annotations") {
        return Ok(text(meta.annotations.as_ref().and_then(|m| m.get(key))));
    }
    Ok(match path {
        "metadata.name" => text(meta.name.as_ref()),
        "metadata.namespace" => text(meta.namespace.as_ref()),
        "metadata.uid" => text(meta.uid.as_ref()),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => text(spec.and_then(|s| s.node_name.as_ref())),
        "spec.serviceAccountName" => text(spec.and_then(|s| s.service_account_name.as_ref())),
        "status.hostIP" | "status.hostIPs" => node.host_ip.clone(),
        "status.podIP" | "status.podIPs" => node.pod_ip.clone(),
        _ => return Err(DownwardError::UnsupportedField(path.to_string())),
    })
}

/// `metadata.labels['key']` -> `key`.
fn subscript<'a>(path: &'a str, map: &str) -> Option<&'a str> {
    path.strip_prefix(map)?
        .strip_prefix("['")?
        .strip_suffix("']")
}

/// Kubelet's `FormatMap`: `key="value"` lines, sorted by key, values Go-quoted.
fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}\n", serde_json::Value::String(v.clone())))
        .collect()
}

/// The value of a `resourceFieldRef` for `container` (the one named in the selector, if
/// any): the quantity divided by `divisor` (default 1), rounded up, as kubelet does.
pub fn resource(
    pod: &Pod,
    container: &Container,
    node: &NodeFacts,
    sel: &ResourceFieldSelector,
) -> Result<String, DownwardError> {
    let container = match sel.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) if name != container.name => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .find(|c| c.name == name)
            .ok_or_else(|| DownwardError::NoContainer(name.to_string()))?,
        _ => container,
    };
    let (section, name) = sel
        .resource
        .split_once('.')
        .ok_or_else(|| DownwardError::UnsupportedResource(sel.resource.clone()))?;
    let resources = container.resources.as_ref();
    let declared =
        |map: Option<&BTreeMap<String, Quantity>>| -> Result<Option<f64>, DownwardError> {
            map.and_then(|m| m.get(name)).map(parse).transpose()
        };
    let value = match (section, name) {
        ("limits", "cpu") => {
            declared(resources.and_then(|r| r.limits.as_ref()))?.unwrap_or(node.cpu_cores)
        }
        ("limits", "memory") => {
            declared(resources.and_then(|r| r.limits.as_ref()))?.unwrap_or(node.memory_bytes)
        }
        ("requests", "cpu" | "memory") => {
            declared(resources.and_then(|r| r.requests.as_ref()))?.unwrap_or(0.0)
        }
        _ => return Err(DownwardError::UnsupportedResource(sel.resource.clone())),
    };
    let divisor = match &sel.divisor {
        Some(q) => parse(q)?,
        None => 1.0,
    };
    if divisor <= 0.0 {
        return Err(DownwardError::Quantity(
            sel.divisor
                .as_ref()
                .map(|q| q.0.clone())
                .unwrap_or_default(),
        ));
    }
    // Kubelet rounds up in milli-units for cpu and in units for memory; in f64 both are
    // the same ceiling of the ratio (cpu values are exact in milli-units).
    let ratio = value / divisor;
    Ok(format!("{}", (ratio - 1e-9).ceil().max(0.0) as i64))
}

fn parse(q: &Quantity) -> Result<f64, DownwardError> {
    control::validation::parse_quantity(&q.0).map_err(|_| DownwardError::Quantity(q.0.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                         "labels": {"app": "web", "tier": "a\"b"}, "annotations": {"note": "hi"}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "sa",
                     "containers": [
                        {"name": "a", "image": "x", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}},
                        {"name": "b", "image": "x"}]}
        }))
        .unwrap()
    }

    fn node() -> NodeFacts {
        NodeFacts {
            host_ip: "10.0.0.1".into(),
            pod_ip: "10.0.0.2".into(),
            cpu_cores: 2.0,
            memory_bytes: 8.0 * 1024.0 * 1024.0 * 1024.0,
        }
    }

    #[test]
    fn field_table() {
        let cases = [
            ("metadata.name", Ok("p")),
            ("metadata.namespace", Ok("ns")),
            ("metadata.uid", Ok("u-1")),
            ("metadata.labels['app']", Ok("web")),
            ("metadata.labels['missing']", Ok("")),
            ("metadata.annotations['note']", Ok("hi")),
            ("metadata.labels", Ok("app=\"web\"\ntier=\"a\\\"b\"\n")),
            ("spec.nodeName", Ok("node-1")),
            ("spec.serviceAccountName", Ok("sa")),
            ("status.podIP", Ok("10.0.0.2")),
            ("status.hostIP", Ok("10.0.0.1")),
            ("spec.bogus", Err("unsupported fieldPath: spec.bogus")),
        ];
        for (path, want) in cases {
            let sel = ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            };
            let got = field(&pod(), &node(), &sel).map_err(|e| e.to_string());
            assert_eq!(
                got.as_deref(),
                want.map_err(str::to_string).as_deref(),
                "{path}"
            );
        }
    }

    #[test]
    fn resource_table() {
        let p = pod();
        let a = &p.spec.as_ref().unwrap().containers[0];
        let cases = [
            ("limits.cpu", None, None, "1"),
            ("limits.cpu", Some("1m"), None, "500"),
            ("requests.cpu", Some("1m"), None, "250"),
            ("limits.memory", None, None, "67108864"),
            ("limits.memory", Some("1Mi"), None, "64"),
            ("requests.memory", None, None, "0"),
            // No limit set: the node's allocatable.
            ("limits.cpu", None, Some("b"), "2"),
            ("limits.memory", Some("1Gi"), Some("b"), "8"),
        ];
        for (res, divisor, container, want) in cases {
            let sel = ResourceFieldSelector {
                resource: res.into(),
                divisor: divisor.map(|d| Quantity(d.into())),
                container_name: container.map(str::to_string),
            };
            assert_eq!(
                resource(&p, a, &node(), &sel).unwrap(),
                want,
                "{res} {divisor:?}"
            );
        }
        let bad = ResourceFieldSelector {
            resource: "limits.gpu".into(),
            ..Default::default()
        };
        assert_eq!(
            resource(&p, a, &node(), &bad).unwrap_err().to_string(),
            "unsupported container resource : limits.gpu"
        );
    }
}
