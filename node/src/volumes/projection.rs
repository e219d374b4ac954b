//! What a virtual volume (configMap, secret, downwardAPI, projected) holds, given the
//! objects it projects: kubelet's rules for keys, `items`, modes and `optional`. Pure.

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, Volume, VolumeProjection};

use crate::downward::{self, DownwardError, NodeFacts};
use crate::env::{References, SourceKind, Sources};
use crate::vfs::{tree::TreeError, Dir, File};

/// Kubernetes' default file mode of projected volumes (`0644`).
pub const DEFAULT_MODE: u32 = 0o644;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectionError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("configmap references non-existent config key: {0}")]
    ConfigMapKey(String),
    #[error("references non-existent secret key: {0}")]
    SecretKey(String),
    #[error("{path}: {source}")]
    Downward { path: String, source: DownwardError },
    #[error("two projected files at {0}")]
    Conflict(String),
}

/// Whether kubelet serves this volume from projected files: the kinds [`files`] builds.
pub fn is_virtual(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// Whether the volume shows fields of the pod (labels and annotations can change).
pub fn uses_pod(v: &Volume) -> bool {
    v.downward_api.is_some()
        || v.projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .any(|s| s.downward_api.is_some())
}

/// The ConfigMaps and Secrets a volume projects.
pub fn references(v: &Volume) -> References {
    let mut r = References::default();
    let mut add = |cm: Option<&str>, secret: Option<&str>| {
        r.config_maps.extend(cm.map(str::to_string));
        r.secrets.extend(secret.map(str::to_string));
    };
    if let Some(cm) = &v.config_map {
        add(Some(&cm.name), None);
    }
    if let Some(s) = &v.secret {
        add(None, s.secret_name.as_deref());
    }
    for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
        add(
            p.config_map.as_ref().map(|c| c.name.as_str()),
            p.secret.as_ref().map(|s| s.name.as_str()),
        );
    }
    r
}

/// The files of a virtual volume, or `None` for other kinds.
pub fn files(
    v: &Volume,
    pod: &Pod,
    node: &NodeFacts,
    sources: &Sources,
) -> Option<Result<Dir, ProjectionError>> {
    let mut out: Vec<(String, File)> = Vec::new();
    let result = if let Some(cm) = &v.config_map {
        let mode = mode_or_default(cm.default_mode);
        let (items, kind) = (cm.items.as_deref(), SourceKind::ConfigMap);
        object_files(&mut out, sources, kind, &cm.name, items, cm.optional, mode)
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = mode_or_default(s.default_mode);
        let (items, kind) = (s.items.as_deref(), SourceKind::Secret);
        object_files(&mut out, sources, kind, &name, items, s.optional, mode)
    } else if let Some(d) = &v.downward_api {
        let mode = mode_or_default(d.default_mode);
        downward_files(
            &mut out,
            pod,
            node,
            d.items.as_deref().unwrap_or_default(),
            mode,
        )
    } else if let Some(p) = &v.projected {
        let mode = mode_or_default(p.default_mode);
        p.sources
            .iter()
            .flatten()
            .try_for_each(|src| projection(&mut out, pod, node, sources, src, mode))
    } else {
        return None;
    };
    Some(result.and_then(|()| {
        let paths: Vec<String> = out.iter().map(|(p, _)| p.clone()).collect();
        Dir::from_files(out).map_err(|e| match e {
            TreeError::Conflict => ProjectionError::Conflict(paths.join(", ")),
            other => ProjectionError::Conflict(other.to_string()),
        })
    }))
}

fn mode_or_default(mode: Option<i32>) -> u32 {
    mode.map_or(DEFAULT_MODE, |m| m as u32 & 0o7777)
}

fn projection(
    out: &mut Vec<(String, File)>,
    pod: &Pod,
    node: &NodeFacts,
    sources: &Sources,
    src: &VolumeProjection,
    mode: u32,
) -> Result<(), ProjectionError> {
    if let Some(cm) = &src.config_map {
        let (items, kind) = (cm.items.as_deref(), SourceKind::ConfigMap);
        object_files(out, sources, kind, &cm.name, items, cm.optional, mode)?;
    }
    if let Some(s) = &src.secret {
        let (items, kind) = (s.items.as_deref(), SourceKind::Secret);
        object_files(out, sources, kind, &s.name, items, s.optional, mode)?;
    }
    if let Some(d) = &src.downward_api {
        downward_files(out, pod, node, d.items.as_deref().unwrap_or_default(), mode)?;
    }
    Ok(())
}

/// Makes the error for a name or key.
type Message = fn(String) -> ProjectionError;

/// The keys of a ConfigMap or Secret as files (see [`keys`]); a missing object is an
/// error unless optional (then it adds nothing).
fn object_files(
    out: &mut Vec<(String, File)>,
    sources: &Sources,
    kind: SourceKind,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: u32,
) -> Result<(), ProjectionError> {
    let (not_found, missing): (Message, Message) = match kind {
        SourceKind::ConfigMap => (
            ProjectionError::ConfigMapNotFound,
            ProjectionError::ConfigMapKey,
        ),
        SourceKind::Secret => (ProjectionError::SecretNotFound, ProjectionError::SecretKey),
    };
    match sources.entries(kind, name, true) {
        Some(data) => keys(out, data, items, optional, mode, missing),
        None if optional == Some(true) => Ok(()),
        None => Err(not_found(name.to_string())),
    }
}

/// Every key as a file named after it, or only the `items`, at their paths and modes. A
/// missing item key is an error unless the source is optional (then it is left out).
fn keys(
    out: &mut Vec<(String, File)>,
    data: Vec<(String, Vec<u8>)>,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: u32,
    missing: Message,
) -> Result<(), ProjectionError> {
    let file = |bytes: &[u8], mode: u32| File {
        data: bytes.to_vec().into(),
        mode,
    };
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        out.extend(data.iter().map(|(k, v)| (k.clone(), file(v, mode))));
        return Ok(());
    };
    for item in items {
        match data.iter().find(|(k, _)| *k == item.key) {
            Some((_, v)) => out.push((
                item.path.clone(),
                file(v, item.mode.map_or(mode, |m| m as u32)),
            )),
            None if optional == Some(true) => {}
            None => return Err(missing(item.key.clone())),
        }
    }
    Ok(())
}

fn downward_files(
    out: &mut Vec<(String, File)>,
    pod: &Pod,
    node: &NodeFacts,
    items: &[DownwardAPIVolumeFile],
    mode: u32,
) -> Result<(), ProjectionError> {
    for item in items {
        let err = |source| ProjectionError::Downward {
            path: item.path.clone(),
            source,
        };
        let text = if let Some(f) = &item.field_ref {
            downward::field(pod, node, f).map_err(err)?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.clone().unwrap_or_default();
            let container = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .find(|c| c.name == name)
                .ok_or_else(|| err(DownwardError::NoContainer(name.clone())))?;
            downward::resource(pod, container, node, r).map_err(err)?
        } else {
            String::new()
        };
        out.push((
            item.path.clone(),
            File {
                data: text.into_bytes().into(),
                mode: item.mode.map_or(mode, |m| m as u32),
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::Node;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use serde_json::{json, Value};

    fn sources() -> Sources {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"bin": "AAE="}
        }))
        .unwrap();
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": "sec"}, "data": {"pw": "c2VjcmV0"}
        }))
        .unwrap();
        Sources {
            config_maps: [("cfg".to_string(), cm)].into(),
            secrets: [("sec".to_string(), s)].into(),
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"memory": "2Mi"}}}]}
        }))
        .unwrap()
    }

    fn node() -> NodeFacts {
        NodeFacts {
            host_ip: "10.0.0.1".into(),
            pod_ip: "10.0.0.1".into(),
            cpu_cores: 1.0,
            memory_bytes: 1.0,
        }
    }

    /// `path mode content` lines of a built volume, sorted by path.
    fn listing(volume: Value) -> Result<Vec<String>, String> {
        let v: Volume = serde_json::from_value(volume).unwrap();
        let dir = files(&v, &pod(), &node(), &sources())
            .expect("virtual")
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        walk(&Node::Dir(dir.into()), "", &mut out);
        Ok(out)
    }

    fn walk(node: &Node, prefix: &str, out: &mut Vec<String>) {
        match node {
            Node::File(f) => out.push(format!(
                "{prefix} {:o} {}",
                f.mode,
                String::from_utf8_lossy(&f.data).escape_debug()
            )),
            Node::Dir(d) => {
                for (name, child) in &d.entries {
                    let path = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}/{name}")
                    };
                    walk(child, &path, out);
                }
            }
        }
    }

    #[test]
    fn volume_table() {
        let cases: Vec<(Value, Result<Vec<&str>, &str>)> = vec![
            (
                json!({"name": "v", "configMap": {"name": "cfg"}}),
                Ok(vec!["a 644 1", "b 644 2", "bin 644 \\0\\u{1}"]),
            ),
            (
                json!({"name": "v", "configMap": {"name": "cfg", "defaultMode": 0o400,
                        "items": [{"key": "a", "path": "dir/a.txt"}, {"key": "b", "path": "b", "mode": 0o600}]}}),
                Ok(vec!["b 600 2", "dir/a.txt 400 1"]),
            ),
            (
                json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}}),
                Err("configmap references non-existent config key: zz"),
            ),
            (
                json!({"name": "v", "configMap": {"name": "cfg", "optional": true, "items": [{"key": "zz", "path": "z"}]}}),
                Ok(vec![]),
            ),
            (
                json!({"name": "v", "configMap": {"name": "nope"}}),
                Err("configmap \"nope\" not found"),
            ),
            (
                json!({"name": "v", "configMap": {"name": "nope", "optional": true}}),
                Ok(vec![]),
            ),
            (
                json!({"name": "v", "secret": {"secretName": "sec"}}),
                Ok(vec!["pw 644 secret"]),
            ),
            (
                json!({"name": "v", "secret": {"secretName": "sec", "items": [{"key": "x", "path": "x"}]}}),
                Err("references non-existent secret key: x"),
            ),
            (
                json!({"name": "v", "secret": {"secretName": "nope"}}),
                Err("secret \"nope\" not found"),
            ),
            (
                json!({"name": "v", "downwardAPI": {"items": [
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]}}),
                Ok(vec![
                    "labels 644 app=\\\"web\\\"\\n",
                    "mem 644 2",
                    "name 644 p",
                ]),
            ),
            (
                json!({"name": "v", "projected": {"defaultMode": 0o440, "sources": [
                    {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "cfg/a"}]}},
                    {"secret": {"name": "sec"}},
                    {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}),
                Ok(vec!["cfg/a 440 1", "ns 440 ns", "pw 440 secret"]),
            ),
            (
                json!({"name": "v", "projected": {"sources": [
                    {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "x"}]}},
                    {"secret": {"name": "sec", "items": [{"key": "pw", "path": "x"}]}}]}}),
                Err("two projected files at x, x"),
            ),
        ];
        for (volume, want) in cases {
            let want = want.map(|v| v.into_iter().map(str::to_string).collect::<Vec<_>>());
            assert_eq!(
                listing(volume.clone()),
                want.map_err(str::to_string),
                "{volume}"
            );
        }
    }

    #[test]
    fn references_and_kinds() {
        let v: Volume = serde_json::from_value(json!({"name": "v", "projected": {"sources": [
            {"configMap": {"name": "a"}}, {"secret": {"name": "s"}}]}}))
        .unwrap();
        assert!(is_virtual(&v));
        assert!(!uses_pod(&v));
        let r = references(&v);
        assert_eq!(r.config_maps, ["a".to_string()].into());
        assert_eq!(r.secrets, ["s".to_string()].into());
        let empty: Volume = serde_json::from_value(json!({"name": "v", "emptyDir": {}})).unwrap();
        assert!(!is_virtual(&empty));
        let downward: Volume =
            serde_json::from_value(json!({"name": "v", "downwardAPI": {"items": []}})).unwrap();
        assert!(uses_pod(&downward));
        assert!(files(&empty, &pod(), &node(), &sources()).is_none());
    }
}
