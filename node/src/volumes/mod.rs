//! A pod's volumes on this node, for WASI guests (kubelet's volume manager).
//!
//! - `emptyDir`: a directory under the node's volume root, shared by the pod's
//!   containers, kept across container restarts, removed with the pod; with
//!   `medium: Memory` it is on tmpfs: `/dev/shm`, or a tmpfs of its own sized by its
//!   `sizeLimit` ([`tmpfs`]).
//! - `hostPath`: the node's directory, after kubelet's `type` check ([`host_path`]).
//! - `persistentVolumeClaim`: the claim's bound volume ([`claims`]); the set-up waits
//!   (and is retried) until the binder has bound the claim.
//! - `configMap`, `secret`, `downwardAPI`, `projected`: virtual ([`crate::vfs`]), built by
//!   [`projection`] from objects read through the [`ControlPlane`] and kept in memory only.
//!   A task per volume watches its ConfigMaps/Secrets (not the `immutable: true` ones),
//!   and the pod itself for downwardAPI files (labels, annotations), and publishes a new
//!   snapshot on every change of content, so a running guest sees the change within
//!   milliseconds of the API write. If a source turns invalid (deleted, key
//!   gone) the volume keeps its last content, as kubelet does.
//!
//! `subPath` mounts are fixed at container start and never updated, as in Kubernetes.

pub mod atomic_writer;
pub mod claims;
pub mod host_path;
pub mod projection;
pub mod tmpfs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Volume, VolumeMount};
use tokio::sync::{mpsc, watch};

use crate::client::{ClientError, ControlPlane, EventKind, ObjectWatch};
use crate::downward::NodeFacts;
use crate::env::Sources;
use crate::runtime::{Mount, MountSource};
use crate::vfs::{Content, Dir, Node, Snapshot};

/// Pause before watching a source again after its watch ended.
const REWATCH: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Kubelet's `FailedMount` wording.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
    SetUp { volume: String, message: String },
    #[error("volume {volume:?}: {kind} volumes are not supported for WASI guests")]
    Unsupported { volume: String, kind: String },
    #[error("volumeMount {mount:?}: no volume of that name")]
    NoVolume { mount: String },
    #[error("volumeMount {mount:?}: subPath {sub_path:?}: {message}")]
    SubPath {
        mount: String,
        sub_path: String,
        message: String,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// What a volume mount names, before a runtime shapes it.
enum Resolved<'a> {
    Host(PathBuf),
    Virtual(&'a Content, Option<&'a str>),
}

fn sub_path_error(m: &VolumeMount, message: &str) -> VolumeError {
    VolumeError::SubPath {
        mount: m.name.clone(),
        sub_path: m.sub_path.clone().unwrap_or_default(),
        message: message.to_string(),
    }
}

/// A node directory (or file) an OCI container bind-mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    pub container_path: String,
    pub host_path: PathBuf,
    pub read_only: bool,
}

enum Prepared {
    Host(PathBuf),
    Virtual(Content),
}

/// The set-up volumes of one pod. Dropping it stops the watchers; [`PodVolumes::tear_down`]
/// also removes the pod's emptyDirs.
pub struct PodVolumes {
    volumes: HashMap<String, Prepared>,
    /// Where the pod's disk and memory emptyDirs are.
    pod_dirs: [PathBuf; 2],
    /// Memory emptyDirs on tmpfs mounts of their own.
    sized: Vec<PathBuf>,
    /// Virtual volumes written out for OCI containers, by volume name.
    materialized: std::sync::Mutex<HashMap<String, atomic_writer::Materialized>>,
    _watchers: Vec<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The tmpfs for `medium: Memory` emptyDirs, shared by every node agent of the machine
/// (pod uids keep them apart).
const MEMORY_ROOT: &str = "/dev/shm/wkube";

/// Where a pod's emptyDirs live: `<root>/<pod uid>/volumes/kubernetes.io~empty-dir/`.
fn pod_dir(root: &Path, pod: &Pod) -> PathBuf {
    root.join(pod.metadata.uid.as_deref().unwrap_or("unknown"))
}

impl PodVolumes {
    /// Sets up every volume of the pod (`pod` holds its newest version and sees later
    /// ones); fails on the first that cannot be (a missing non-optional ConfigMap, a failed
    /// hostPath check, ...), to be retried.
    pub async fn set_up<C: ControlPlane>(
        client: &Arc<C>,
        pod_updates: &watch::Receiver<Pod>,
        node: &NodeFacts,
        root: &Path,
    ) -> Result<PodVolumes, VolumeError> {
        let pod = &pod_updates.borrow().clone();
        let pod_dirs = [pod_dir(root, pod), pod_dir(Path::new(MEMORY_ROOT), pod)];
        let mut volumes = HashMap::new();
        let mut watchers = Vec::new();
        let mut sized = Vec::new();
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let set_up = |message: String| VolumeError::SetUp {
                volume: v.name.clone(),
                message,
            };
            let prepared = if let Some(e) = &v.empty_dir {
                let memory = e.medium.as_deref() == Some("Memory");
                let dir = pod_dirs[usize::from(memory)]
                    .join("volumes/kubernetes.io~empty-dir")
                    .join(&v.name);
                std::fs::create_dir_all(&dir).map_err(|e| set_up(e.to_string()))?;
                if let Some(limit) = e.size_limit.as_ref().filter(|_| memory) {
                    let bytes = tmpfs::limit_bytes(&limit.0).map_err(|e| set_up(e.to_string()))?;
                    tmpfs::mount_sized(&dir, bytes).map_err(|e| set_up(e.to_string()))?;
                    sized.push(dir.clone());
                }
                Prepared::Host(dir)
            } else if let Some(hp) = &v.host_path {
                let path = PathBuf::from(&hp.path);
                host_path::check(&path, hp.type_.as_deref()).map_err(|e| set_up(e.to_string()))?;
                Prepared::Host(path)
            } else if let Some(claim) = &v.persistent_volume_claim {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
                let dir = claims::resolve(&**client, namespace, &claim.claim_name, root)
                    .await
                    .map_err(|e| set_up(e.to_string()))?;
                Prepared::Host(dir)
            } else if projection::is_virtual(v) {
                let (content, watcher) = follow(client, v, pod_updates, node).await?;
                watchers.extend(watcher);
                Prepared::Virtual(content)
            } else {
                let kind = serde_json::to_value(v)
                    .ok()
                    .and_then(|j| j.as_object()?.keys().find(|k| *k != "name").cloned())
                    .unwrap_or_default();
                return Err(VolumeError::Unsupported {
                    volume: v.name.clone(),
                    kind,
                });
            };
            volumes.insert(v.name.clone(), prepared);
        }
        Ok(PodVolumes {
            volumes,
            pod_dirs,
            sized,
            materialized: Default::default(),
            _watchers: watchers,
        })
    }

    /// What an OCI `container` bind-mounts, in its `volumeMounts` order: node directories,
    /// with the virtual volumes written to tmpfs and kept current there
    /// ([`atomic_writer`]), once per pod whichever container asks first. A `subPath` of a
    /// virtual volume is the file or directory of the version current now, so it never
    /// updates, as in Kubernetes.
    pub fn host_mounts(&self, container: &Container) -> Result<Vec<HostMount>, VolumeError> {
        let mut out = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let (host_path, read_only) = match self.resolve(m)? {
                Resolved::Host(path) => (path, m.read_only == Some(true)),
                Resolved::Virtual(content, sub_path) => {
                    let dir = self.materialize(&m.name, content)?;
                    let path = match sub_path {
                        Some(sub) => dir
                            .join(sub)
                            .canonicalize()
                            .map_err(|e| sub_path_error(m, &e.to_string()))?,
                        None => dir,
                    };
                    (path, true)
                }
            };
            out.push(HostMount {
                container_path: m.mount_path.clone(),
                host_path,
                read_only,
            });
        }
        Ok(out)
    }

    /// The volume a mount names: a node directory (its `subPath` made, as kubelet does),
    /// or virtual content with the `subPath` to take of it.
    fn resolve<'a>(&'a self, m: &'a VolumeMount) -> Result<Resolved<'a>, VolumeError> {
        let volume = self
            .volumes
            .get(&m.name)
            .ok_or_else(|| VolumeError::NoVolume {
                mount: m.name.clone(),
            })?;
        let sub_path = m.sub_path.as_deref().filter(|s| !s.is_empty());
        Ok(match (volume, sub_path) {
            (Prepared::Host(path), None) => Resolved::Host(path.clone()),
            (Prepared::Host(path), Some(sub)) => {
                // Kubelet creates a missing subPath directory in the volume.
                let path = path.join(sub);
                std::fs::create_dir_all(&path).map_err(|e| sub_path_error(m, &e.to_string()))?;
                Resolved::Host(path)
            }
            (Prepared::Virtual(content), sub) => Resolved::Virtual(content, sub),
        })
    }

    /// The tmpfs directory that holds the virtual volume `name`, written on first use.
    fn materialize(&self, name: &str, content: &Content) -> Result<PathBuf, VolumeError> {
        let mut written = self.materialized.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = written.get(name) {
            return Ok(m.dir().to_path_buf());
        }
        let dir = self.pod_dirs[1]
            .join("volumes/kubernetes.io~projected")
            .join(name);
        let m = atomic_writer::Materialized::start(content.clone(), dir).map_err(|e| {
            VolumeError::SetUp {
                volume: name.to_string(),
                message: e.to_string(),
            }
        })?;
        let dir = m.dir().to_path_buf();
        written.insert(name.to_string(), m);
        Ok(dir)
    }

    /// What `container` mounts, in its `volumeMounts` order.
    pub fn mounts(&self, container: &Container) -> Result<Vec<Mount>, VolumeError> {
        let mut out = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let mount = match self.resolve(m)? {
                Resolved::Host(path) => Mount {
                    guest_path: m.mount_path.clone(),
                    source: MountSource::Host {
                        path,
                        read_only: m.read_only == Some(true),
                    },
                },
                Resolved::Virtual(content, None) => Mount {
                    guest_path: m.mount_path.clone(),
                    source: MountSource::Virtual(content.clone()),
                },
                Resolved::Virtual(content, Some(sub)) => {
                    let node = content
                        .borrow()
                        .root
                        .resolve(sub)
                        .map_err(|e| sub_path_error(m, &e.to_string()))?;
                    fixed_mount(&m.mount_path, node)
                }
            };
            out.push(mount);
        }
        Ok(out)
    }

    /// Removes the pod's emptyDirs (the pod is gone).
    pub fn tear_down(self) {
        // Stops the writers and removes their directories before the pod's are.
        drop(self.materialized);
        for dir in &self.sized {
            tmpfs::unmount_if_mounted(dir);
        }
        for dir in &self.pod_dirs {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing pod volumes");
                }
            }
        }
    }
}

/// A `subPath` of a virtual volume: a copy of that node now, never updated. A WASI preopen
/// is a directory, so a single file is served as the only entry of its parent directory.
fn fixed_mount(mount_path: &str, node: Node) -> Mount {
    let (guest_path, root) = match node {
        Node::Dir(d) => (mount_path.to_string(), Dir::clone(&d)),
        Node::File(f) => {
            let (parent, name) = mount_path.rsplit_once('/').unwrap_or(("", mount_path));
            let parent = if parent.is_empty() { "/" } else { parent };
            let dir = Dir {
                entries: [(name.to_string(), Node::File(f))].into(),
            };
            (parent.to_string(), dir)
        }
    };
    // The sender is dropped at once: the receiver keeps the one value forever.
    let (_, content) = watch::channel(Snapshot::new(root));
    Mount {
        guest_path,
        source: MountSource::Virtual(content),
    }
}

/// A change to one source of a virtual volume (`None`: deleted).
enum SourceUpdate {
    ConfigMap(String, Option<ConfigMap>),
    Secret(String, Option<Secret>),
}

/// Reads the sources of virtual volume `v`, builds its first snapshot and starts the
/// task that follows their changes (none if nothing it shows can change).
async fn follow<C: ControlPlane>(
    client: &Arc<C>,
    v: &Volume,
    pod_updates: &watch::Receiver<Pod>,
    node: &NodeFacts,
) -> Result<(Content, Option<AbortOnDrop>), VolumeError> {
    let mut pod_updates = pod_updates.clone();
    let pod = &pod_updates.borrow_and_update().clone();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let refs = projection::references(v);
    let mut sources = Sources::default();
    for name in &refs.config_maps {
        if let Some(cm) = client.get_config_map(&ns, name).await? {
            sources.config_maps.insert(name.clone(), cm);
        }
    }
    for name in &refs.secrets {
        if let Some(s) = client.get_secret(&ns, name).await? {
            sources.secrets.insert(name.clone(), s);
        }
    }
    let build = |sources: &Sources| {
        projection::files(v, pod, node, sources)
            .expect("a virtual volume")
            .map_err(|e| VolumeError::SetUp {
                volume: v.name.clone(),
                message: e.to_string(),
            })
    };
    let (tx, content) = watch::channel(Snapshot::new(build(&sources)?));
    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let mut watches = Vec::new();
    for name in &refs.config_maps {
        if !sources.config_maps.get(name).is_some_and(Source::immutable) {
            let (c, namespace) = (client.clone(), ns.clone());
            let open = move |name: &str| c.watch_config_map(&namespace, name);
            watches.push(forward(open, name.clone(), updates_tx.clone()));
        }
    }
    for name in &refs.secrets {
        if !sources.secrets.get(name).is_some_and(Source::immutable) {
            let (c, namespace) = (client.clone(), ns.clone());
            let open = move |name: &str| c.watch_secret(&namespace, name);
            watches.push(forward(open, name.clone(), updates_tx.clone()));
        }
    }
    drop(updates_tx);
    let mut follow_pod = projection::uses_pod(v);
    if watches.is_empty() && !follow_pod {
        return Ok((content, None));
    }
    let (v, mut pod, node) = (v.clone(), pod.clone(), node.clone());
    let mut follow_sources = !watches.is_empty();
    let task = tokio::spawn(async move {
        // The forwarders end with this task.
        let _watches: Vec<AbortOnDrop> = watches;
        while follow_sources || follow_pod {
            let update = tokio::select! {
                update = updates.recv(), if follow_sources => {
                    // Every forwarder ended: the sources became immutable.
                    follow_sources = update.is_some();
                    update
                }
                changed = pod_updates.changed(), if follow_pod => {
                    match changed {
                        Ok(()) => pod = pod_updates.borrow_and_update().clone(),
                        Err(_) => follow_pod = false,
                    }
                    None
                }
            };
            match update {
                None => {}
                Some(SourceUpdate::ConfigMap(name, Some(cm))) => {
                    sources.config_maps.insert(name, cm);
                }
                Some(SourceUpdate::ConfigMap(name, None)) => {
                    sources.config_maps.remove(&name);
                }
                Some(SourceUpdate::Secret(name, Some(s))) => {
                    sources.secrets.insert(name, s);
                }
                Some(SourceUpdate::Secret(name, None)) => {
                    sources.secrets.remove(&name);
                }
            }
            match projection::files(&v, &pod, &node, &sources).expect("a virtual volume") {
                Ok(dir) => {
                    let root = Node::Dir(Arc::new(dir));
                    if tx.borrow().root != root {
                        let Node::Dir(dir) = root else { unreachable!() };
                        tx.send_replace(Snapshot::new(Arc::unwrap_or_clone(dir)));
                    }
                }
                Err(e) => {
                    tracing::warn!(volume = %v.name, error = %e, "keeping the volume's last content");
                }
            }
        }
    });
    Ok((content, Some(AbortOnDrop(task))))
}

/// A ConfigMap or a Secret, as a source of a virtual volume.
trait Source: serde::de::DeserializeOwned + Send + 'static {
    /// `immutable: true`: it never changes, so it is not watched.
    fn immutable(&self) -> bool;
    fn update(name: String, object: Option<Self>) -> SourceUpdate;
}

impl Source for ConfigMap {
    fn immutable(&self) -> bool {
        self.immutable == Some(true)
    }

    fn update(name: String, object: Option<Self>) -> SourceUpdate {
        SourceUpdate::ConfigMap(name, object)
    }
}

impl Source for Secret {
    fn immutable(&self) -> bool {
        self.immutable == Some(true)
    }

    fn update(name: String, object: Option<Self>) -> SourceUpdate {
        SourceUpdate::Secret(name, object)
    }
}

/// Forwards the changes of one watched object as [`SourceUpdate`]s, re-watching when a
/// watch ends, until the object becomes immutable.
fn forward<T, W>(open: W, name: String, tx: mpsc::UnboundedSender<SourceUpdate>) -> AbortOnDrop
where
    T: Source,
    W: Fn(&str) -> Result<ObjectWatch<T>, ClientError> + Send + 'static,
{
    AbortOnDrop(tokio::spawn(async move {
        loop {
            match open(&name) {
                Ok(mut w) => {
                    while let Some(event) = w.next().await {
                        let Ok(event) = event else { continue };
                        let object = match event.kind {
                            EventKind::Deleted => None,
                            EventKind::Upsert => Some(event.object),
                        };
                        let done = object.as_ref().is_some_and(T::immutable);
                        if tx.send(T::update(name.clone(), object)).is_err() || done {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "cannot watch a volume source")
                }
            }
            tokio::time::sleep(REWATCH).await;
        }
    }))
}
