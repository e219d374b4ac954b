//! `persistentVolumeClaim` volumes: the claim's bound PersistentVolume as a directory of
//! this node (kubelet's volume manager for the plugins wkube has).
//!
//! - `local-path` volumes (CSI driver [`LOCAL_PATH_DRIVER`], provisioned by the control
//!   plane with an affinity to this node) are directories `<root>/local-path/<handle>`,
//!   created on first use and removed by [`collect_garbage`] once their volume is gone
//!   (reclaim policy `Delete`).
//! - `hostPath` and `local` volumes are the node's own directories.
//!
//! A claim that is not bound yet fails the set-up, which the pod worker retries (the pod
//! stays `ContainerCreating`), as kubelet waits for the binder.

use std::path::{Path, PathBuf};

use control::storage_class::LOCAL_PATH_DRIVER;
use k8s_openapi::api::core::v1::PersistentVolume;

use crate::client::{ClientError, ControlPlane};

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("persistentvolumeclaim \"{0}\" not found")]
    NoClaim(String),
    #[error("PVC {namespace}/{claim} has non-bound phase (\"{phase}\") or empty pvc.Spec.VolumeName (\"{volume}\")")]
    Unbound {
        namespace: String,
        claim: String,
        phase: String,
        volume: String,
    },
    #[error("persistentvolume \"{0}\" not found")]
    NoVolume(String),
    #[error("persistentvolume \"{volume}\": {message}")]
    Unsupported { volume: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Where local-path volumes live under the node's volume root.
pub fn local_path_root(volume_root: &Path) -> PathBuf {
    volume_root.join("local-path")
}

/// The directory that serves the claim `name` of `namespace`, created if it is a
/// local-path volume seen for the first time.
pub async fn resolve<C: ControlPlane>(
    client: &C,
    namespace: &str,
    name: &str,
    volume_root: &Path,
) -> Result<PathBuf, ClaimError> {
    let claim = client
        .get_claim(namespace, name)
        .await?
        .ok_or_else(|| ClaimError::NoClaim(name.into()))?;
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if phase != "Bound" || volume_name.is_empty() {
        return Err(ClaimError::Unbound {
            namespace: namespace.into(),
            claim: name.into(),
            phase,
            volume: volume_name,
        });
    }
    let volume = client
        .get_volume(&volume_name)
        .await?
        .ok_or_else(|| ClaimError::NoVolume(volume_name.clone()))?;
    let path = volume_path(&volume, volume_root)?;
    if is_local_path(&volume) {
        create_shared_dir(&path)?;
    }
    Ok(path)
}

fn is_local_path(volume: &PersistentVolume) -> bool {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.csi.as_ref())
        .is_some_and(|c| c.driver == LOCAL_PATH_DRIVER)
}

/// The node directory behind a volume.
fn volume_path(volume: &PersistentVolume, volume_root: &Path) -> Result<PathBuf, ClaimError> {
    let name = volume.metadata.name.clone().unwrap_or_default();
    let unsupported = |message: String| ClaimError::Unsupported {
        volume: name.clone(),
        message,
    };
    let spec = volume.spec.clone().unwrap_or_default();
    if let Some(csi) = &spec.csi {
        if csi.driver != LOCAL_PATH_DRIVER {
            return Err(unsupported(format!(
                "CSI driver {} is not served on this node",
                csi.driver
            )));
        }
        // The handle is one path component, so it stays under the root.
        let handle = &csi.volume_handle;
        let mut parts = Path::new(handle).components();
        let plain = matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        );
        if !plain {
            return Err(unsupported(format!("invalid volume handle {handle:?}")));
        }
        return Ok(local_path_root(volume_root).join(handle));
    }
    if let Some(host) = &spec.host_path {
        return Ok(PathBuf::from(&host.path));
    }
    if let Some(local) = &spec.local {
        return Ok(PathBuf::from(&local.path));
    }
    Err(unsupported(
        "only local-path, hostPath and local volumes can be mounted on this node".into(),
    ))
}

/// A directory any container user may write, as the local-path provisioner makes them.
fn create_shared_dir(path: &Path) -> Result<(), ClaimError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| ClaimError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(io)
}

/// Removes the local-path directories whose volume no longer exists (it was deleted by
/// its reclaim policy). Returns what it removed.
pub async fn collect_garbage<C: ControlPlane>(
    client: &C,
    volume_root: &Path,
) -> Result<Vec<PathBuf>, ClaimError> {
    let root = local_path_root(volume_root);
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ClaimError::Io { path: root, source }),
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let Some(handle) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if client.get_volume(&handle).await?.is_none() {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(|source| ClaimError::Io {
                path: path.clone(),
                source,
            })?;
            removed.push(path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn volume(spec: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": "pvc-1"}, "spec": spec})).unwrap()
    }

    #[test]
    fn volumes_map_to_node_directories() {
        let root = Path::new("/var/lib/wkube/pods");
        let local_path =
            volume(json!({"csi": {"driver": LOCAL_PATH_DRIVER, "volumeHandle": "pvc-1"}}));
        assert_eq!(
            volume_path(&local_path, root).unwrap(),
            root.join("local-path/pvc-1")
        );
        let host = volume(json!({"hostPath": {"path": "/srv/data"}}));
        assert_eq!(volume_path(&host, root).unwrap(), Path::new("/srv/data"));
        for bad in ["../escape", "a/b", ".."] {
            let v = volume(json!({"csi": {"driver": LOCAL_PATH_DRIVER, "volumeHandle": bad}}));
            assert!(volume_path(&v, root).is_err(), "{bad}");
        }
        let other = volume(json!({"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "x"}}));
        assert!(volume_path(&other, root)
            .unwrap_err()
            .to_string()
            .contains("not served on this node"));
    }
}
