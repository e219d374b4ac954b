//! Sandboxes made ahead of time. Most of an OCI pod's start is its sandbox: containerd
//! makes a network namespace, runs the CNI plugins, starts a shim and the pause container
//! (about 70 ms of the 130 a busybox pod takes here). The node keeps a few such sandboxes
//! ready and hands one to each new pod whose sandbox would look the same, then makes
//! another in the background.
//!
//! A pooled sandbox is made for no pod, so what is the pod's in a sandbox is set when it is
//! claimed: the hostname, in the pause container's UTS namespace (which the pod's
//! containers join) and in the `/etc/hostname` file containerd mounts into them. Everything
//! else containerd takes from the sandbox configuration sent with each `CreateContainer`
//! (the log directory, the `HOSTNAME` variable), which is the pod's own. A sandbox is
//! claimed once and goes with its pod; it never goes back to the pool.
//!
//! CRI labels cannot change after creation, so a claimed sandbox still carries the pool's
//! labels: the claim is written down ([`Claims`], a file per sandbox under the node's
//! containerd directory) before the pod uses it, and a restarted node finds its pods'
//! sandboxes through it.

use std::collections::{HashMap, VecDeque};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::sandbox::{sandbox_config, PodIdentity};
use super::{ContainerdError, CriClient};

/// The label of the sandboxes made for the pool.
pub const POOL_LABEL: &str = "io.wkube.pool";
/// The namespace pooled sandboxes are named in (their CRI metadata) until claimed, and
/// after: CRI metadata cannot change either.
const POOL_NAMESPACE: &str = "wkube-pool";
/// How long the pool waits after failing to make a sandbox before it tries again.
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("setting the hostname in the UTS namespace of process {pid}: {source}")]
    Hostname {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("the pooled sandbox {0} has no pause process")]
    NoProcess(String),
    #[error("the pooled sandbox {0} got no IP address")]
    NoAddress(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PoolError + '_ {
    move |source| PoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A sandbox of the pool, ready to be claimed.
#[derive(Debug, Clone)]
pub struct Pooled {
    pub id: String,
    pub ip: String,
    pub pid: u32,
}

/// The pod a claimed sandbox belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

/// The claims, in memory and on disk (one file per claimed sandbox, named by its id).
pub struct Claims {
    dir: PathBuf,
    by_sandbox: Mutex<HashMap<String, Claim>>,
}

impl Claims {
    /// The claims on the sandboxes of the node's containerd whose directory is
    /// `containerd_dir`.
    pub fn of_node(containerd_dir: &Path) -> Result<Claims, ContainerdError> {
        Claims::open(&containerd_dir.join("sandbox-claims"))
    }

    /// Reads the claims written in `dir` (made if missing).
    fn open(dir: &Path) -> Result<Claims, ContainerdError> {
        let failed = |source| ContainerdError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(failed)?;
        let mut by_sandbox = HashMap::new();
        for entry in std::fs::read_dir(dir).map_err(failed)? {
            let path = entry.map_err(failed)?.path();
            let Some(id) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            // A claim whose writing was cut short is a temporary file: its sandbox was
            // never used, and the pool takes it back or removes it.
            if id.ends_with(".tmp") {
                continue;
            }
            // Claims are renamed into place whole, so an unreadable one was not written by
            // this node: it claims nothing, and housekeeping removes its sandbox.
            let read = std::fs::read(&path).map_err(|e| e.to_string());
            match read.and_then(|text| serde_json::from_slice(&text).map_err(|e| e.to_string())) {
                Ok(claim) => {
                    by_sandbox.insert(id.to_string(), claim);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable sandbox claim")
                }
            }
        }
        Ok(Claims {
            dir: dir.to_path_buf(),
            by_sandbox: Mutex::new(by_sandbox),
        })
    }

    /// Writes the claim down durably, then records it.
    fn record(&self, sandbox: &str, claim: Claim) -> Result<(), PoolError> {
        let path = self.dir.join(sandbox);
        let tmp = self.dir.join(format!("{sandbox}.tmp"));
        let text = serde_json::to_vec(&claim).expect("a claim serializes");
        write_synced(&tmp, &text)?;
        std::fs::rename(&tmp, &path).map_err(io_error(&path))?;
        self.lock().insert(sandbox.to_string(), claim);
        Ok(())
    }

    /// The pod that claimed this sandbox.
    pub fn of_sandbox(&self, sandbox: &str) -> Option<Claim> {
        self.lock().get(sandbox).cloned()
    }

    /// The sandbox this pod claimed.
    pub fn of_pod(&self, uid: &str) -> Option<String> {
        (self.lock().iter())
            .find(|(_, claim)| claim.uid == uid)
            .map(|(id, _)| id.clone())
    }

    /// Forgets the claims on sandboxes that are gone without this node removing them.
    pub fn retain(&self, exists: impl Fn(&str) -> bool) {
        let gone: Vec<String> = (self.lock().keys())
            .filter(|id| !exists(id))
            .cloned()
            .collect();
        for id in gone {
            self.forget(&id);
        }
    }

    /// Forgets the claim on a sandbox that is gone.
    pub fn forget(&self, sandbox: &str) {
        if self.lock().remove(sandbox).is_some() {
            let path = self.dir.join(sandbox);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a sandbox claim");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Claim>> {
        self.by_sandbox.lock().expect("claims lock")
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), PoolError> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// The pool of one node.
pub struct SandboxPool {
    node: String,
    size: usize,
    /// Where containerd's CRI plugin keeps each sandbox's files (`<id>/hostname`).
    sandbox_files: PathBuf,
    /// The log directory of the pooled sandboxes' own configuration; the pod's containers
    /// log under their pod's, sent with each `CreateContainer`.
    log_dir: PathBuf,
    ready: Mutex<VecDeque<Pooled>>,
    claims: Arc<Claims>,
    refill: Notify,
}

impl SandboxPool {
    /// A pool of `size` sandboxes for `node`, whose own containerd keeps its state under
    /// `containerd_dir`.
    pub fn new(node: &str, size: usize, containerd_dir: &Path, claims: Arc<Claims>) -> SandboxPool {
        SandboxPool {
            node: node.to_string(),
            size,
            sandbox_files: containerd_dir.join("root/io.containerd.grpc.v1.cri/sandboxes"),
            log_dir: containerd_dir.join("pool-logs"),
            ready: Mutex::new(VecDeque::new()),
            claims,
            refill: Notify::new(),
        }
    }

    /// Whether this pod's sandbox can come from the pool: it would be configured as the
    /// pool's are, but for its name and hostname.
    fn fits(pod: &PodIdentity) -> bool {
        !pod.share_process_namespace
    }

    /// Takes a ready sandbox for `pod`, if the pool has one and the pod [`fits`] it, and
    /// makes it the pod's. A sandbox that cannot be made the pod's is removed, and the
    /// next one tried.
    ///
    /// [`fits`]: SandboxPool::fits
    pub async fn claim(&self, cri: &mut CriClient, pod: &PodIdentity) -> Option<Pooled> {
        if !SandboxPool::fits(pod) {
            return None;
        }
        loop {
            let pooled = self.lock().pop_front()?;
            self.refill.notify_one();
            match self.make_pods(&pooled, pod) {
                Ok(()) => return Some(pooled),
                Err(e) => {
                    tracing::warn!(sandbox = %pooled.id, error = %e, "cannot claim a pooled sandbox");
                    if let Err(e) = cri.remove_sandbox(&pooled.id).await {
                        tracing::warn!(sandbox = %pooled.id, error = %e, "cannot remove a pooled sandbox");
                    }
                }
            }
        }
    }

    /// Gives the sandbox the pod's hostname, then writes the claim down.
    fn make_pods(&self, pooled: &Pooled, pod: &PodIdentity) -> Result<(), PoolError> {
        set_hostname(pooled.pid, &pod.hostname)?;
        let file = self.sandbox_files.join(&pooled.id).join("hostname");
        let tmp = file.with_extension("tmp");
        write_synced(&tmp, format!("{}\n", pod.hostname).as_bytes())?;
        std::fs::rename(&tmp, &file).map_err(io_error(&file))?;
        self.claims.record(
            &pooled.id,
            Claim {
                uid: pod.uid.clone(),
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
            },
        )
    }

    /// Keeps the pool full until the task is dropped: first takes back the unclaimed
    /// sandboxes a previous run of the node left, then makes new ones as they are taken.
    /// A pool of size 0 only clears what an earlier, larger one left.
    pub async fn fill(self: Arc<Self>, mut cri: CriClient) {
        if let Err(e) = self.adopt(&mut cri).await {
            tracing::warn!(error = %e, "sandbox pool: cannot list the sandboxes left by the last run");
        }
        if self.size == 0 {
            return;
        }
        loop {
            while self.lock().len() < self.size {
                match self.make(&mut cri).await {
                    Ok(pooled) => self.lock().push_back(pooled),
                    Err(e) => {
                        tracing::warn!(error = %e, "sandbox pool: cannot make a sandbox");
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
            self.refill.notified().await;
        }
    }

    /// Takes back the unclaimed sandboxes of the pool a previous run of the node made, as
    /// many as the pool holds now, and removes the others. Only the pool removes unclaimed
    /// ones: housekeeping cannot tell them from one being made or claimed.
    async fn adopt(&self, cri: &mut CriClient) -> Result<(), PoolError> {
        for sandbox in cri.node_sandboxes(&self.node).await? {
            if !sandbox.labels.contains_key(POOL_LABEL)
                || self.claims.of_sandbox(&sandbox.id).is_some()
            {
                continue;
            }
            let ready = sandbox.state == cri::v1::PodSandboxState::SandboxReady as i32;
            let room = self.lock().len() < self.size;
            let adopted = if ready && room {
                self.ready_sandbox(cri, sandbox.id.clone()).await.ok()
            } else {
                None
            };
            match adopted {
                Some(pooled) => self.lock().push_back(pooled),
                None => cri.remove_sandbox(&sandbox.id).await?,
            }
        }
        Ok(())
    }

    async fn make(&self, cri: &mut CriClient) -> Result<Pooled, PoolError> {
        let uid = uuid::Uuid::new_v4().to_string();
        let mut config = sandbox_config(
            &PodIdentity {
                name: format!("pool-{}", &uid[..8]),
                namespace: POOL_NAMESPACE.into(),
                uid,
                node: self.node.clone(),
                attempt: 0,
                share_process_namespace: false,
                hostname: POOL_NAMESPACE.into(),
            },
            self.log_dir.clone(),
        );
        config.labels.insert(POOL_LABEL.into(), "true".into());
        let id = cri.run_sandbox(&config).await?;
        match self.ready_sandbox(cri, id.clone()).await {
            Ok(pooled) => Ok(pooled),
            Err(e) => {
                let _ = cri.remove_sandbox(&id).await;
                Err(e)
            }
        }
    }

    async fn ready_sandbox(&self, cri: &mut CriClient, id: String) -> Result<Pooled, PoolError> {
        let ip = (cri.sandbox_ip(&id).await?).ok_or_else(|| PoolError::NoAddress(id.clone()))?;
        let pid = (cri.sandbox_pid(&id).await?).ok_or_else(|| PoolError::NoProcess(id.clone()))?;
        Ok(Pooled { id, ip, pid })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pooled>> {
        self.ready.lock().expect("pool lock")
    }
}

/// Sets the hostname in the UTS namespace of process `pid`, from a thread of its own
/// (`setns(2)` moves only the calling thread, which ends with it).
fn set_hostname(pid: u32, hostname: &str) -> Result<(), PoolError> {
    let failed = |source| PoolError::Hostname { pid, source };
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/uts")).map_err(failed)?;
    let name = hostname.as_bytes().to_vec();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                rustix::thread::move_into_link_name_space(
                    ns.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::HostNameAndNISDomainName),
                )?;
                rustix::system::sethostname(&name)
            })
            .join()
            .expect("the hostname thread does not panic")
    })
    .map_err(|e| failed(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(uid: &str) -> Claim {
        Claim {
            uid: uid.into(),
            namespace: "default".into(),
            name: format!("pod-{uid}"),
        }
    }

    #[test]
    fn claims_survive_a_restart_and_go_when_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::open(dir.path()).unwrap();
        claims.record("sandbox-a", claim("a")).unwrap();
        claims.record("sandbox-b", claim("b")).unwrap();
        claims.forget("sandbox-b");

        let reopened = Claims::open(dir.path()).unwrap();
        assert_eq!(reopened.of_sandbox("sandbox-a"), Some(claim("a")));
        assert_eq!(reopened.of_pod("a").as_deref(), Some("sandbox-a"));
        assert_eq!(reopened.of_sandbox("sandbox-b"), None);
        assert_eq!(reopened.of_pod("b"), None);
    }

    #[test]
    fn a_claim_cut_short_is_not_a_claim() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sandbox-c.tmp"), b"{\"uid\":").unwrap();
        let claims = Claims::open(dir.path()).unwrap();
        assert_eq!(claims.of_sandbox("sandbox-c"), None);
    }

    #[test]
    fn only_pods_configured_like_the_pool_take_from_it() {
        let pod = PodIdentity {
            name: "web".into(),
            namespace: "default".into(),
            uid: "u".into(),
            node: "n".into(),
            attempt: 0,
            share_process_namespace: false,
            hostname: "web".into(),
        };
        assert!(SandboxPool::fits(&pod));
        assert!(!SandboxPool::fits(&PodIdentity {
            share_process_namespace: true,
            ..pod
        }));
    }
}
