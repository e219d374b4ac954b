//! Runs and supervises the node's own containerd.
//!
//! Everything containerd keeps lives under one directory: its configuration, the gRPC and
//! ttrpc sockets, the image and snapshot store (`root`) and its runtime state (`state`).
//! If containerd dies it is started again, with back-off; the containers it ran keep
//! running meanwhile, because each one is owned by its own shim process, which the new
//! containerd reconnects to. Dropping the [`Supervisor`] stops containerd the same way.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::network::PodNetwork;
use super::{pause, ContainerdError};

/// How long a starting containerd may take to serve its socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Back-off between restarts of a containerd that keeps dying.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where the Debian package `containernetworking-plugins` installs the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// What the node tells its containerd.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Holds everything containerd writes.
    pub dir: PathBuf,
    /// The image of every pod's sandbox (its "pause" container), already in the store.
    pub sandbox_image: String,
    /// Registries (`host:port`) reached over plain HTTP, e.g. a test registry on loopback.
    pub insecure_registries: Vec<String>,
    pub network: PodNetwork,
}

impl Settings {
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }

    /// Per-registry settings, in containerd's `hosts.toml` layout.
    pub fn registry_dir(&self) -> PathBuf {
        self.dir.join("registries")
    }

    /// The `hosts.toml` of each insecure registry: plain HTTP, for pulls only.
    pub fn registry_hosts(&self) -> Vec<(PathBuf, String)> {
        self.insecure_registries
            .iter()
            .map(|registry| {
                let file = self.registry_dir().join(registry).join("hosts.toml");
                let toml = format!(
                    "server = \"http://{registry}\"\n\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
                );
                (file, toml)
            })
            .collect()
    }

    /// containerd's configuration (format version 2, containerd 1.6 and later).
    pub fn config(&self) -> String {
        let path = |p: &str| self.dir.join(p).display().to_string();
        format!(
            r#"version = 2
root = "{root}"
state = "{state}"

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # Sandboxes ask for an oom_score_adj of -998; where the node itself may not go below its
  # own (a container, a restricted VM), runc would fail. Never ask below containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{registries}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"#,
            root = path("root"),
            state = path("state"),
            socket = self.socket().display(),
            opt = path("opt"),
            sandbox_image = self.sandbox_image,
            cni_bin = CNI_BIN_DIR,
            cni_conf = self.cni_conf_dir().display(),
            registries = self.registry_dir().display(),
        )
    }
}

/// The running containerd; dropping it stops containerd (not the containers).
pub struct Supervisor {
    settings: Settings,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Writes the configuration, starts containerd and returns once its CRI socket serves.
    pub async fn start(settings: Settings) -> Result<Supervisor, ContainerdError> {
        let binary = which("containerd")
            .ok_or_else(|| ContainerdError::NotInstalled("no `containerd` on PATH".into()))?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ContainerdError::Io { path, source }
        };
        std::fs::create_dir_all(settings.cni_conf_dir()).map_err(io(&settings.cni_conf_dir()))?;
        let config = settings.dir.join("config.toml");
        std::fs::write(&config, settings.config()).map_err(io(&config))?;
        let conflist = settings.cni_conf_dir().join("10-wkube.conflist");
        let ipam = settings.dir.join("ipam");
        std::fs::write(&conflist, settings.network.conflist(&ipam)).map_err(io(&conflist))?;
        for (file, toml) in settings.registry_hosts() {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            std::fs::write(&file, toml).map_err(io(&file))?;
        }
        // A node killed with `kill -9` leaves its containerd behind, holding the stores;
        // the containers are safe with their shims, so it can go.
        if let Some(old) = running(&config) {
            stop_process(old, Duration::from_secs(10)).await;
        }
        let child = spawn(&binary, &settings).await?;
        ensure_sandbox_image(&settings).await?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(supervise(binary, settings.clone(), child, stopped));
        Ok(Supervisor {
            settings,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn socket(&self) -> PathBuf {
        self.settings.socket()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Stops containerd and waits until it has exited.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Loads the built-in sandbox image unless containerd has it already.
async fn ensure_sandbox_image(settings: &Settings) -> Result<(), ContainerdError> {
    let mut cri = super::connect(&settings.socket()).await?;
    // The CRI service answers "not initialized yet" while containerd restores what it ran
    // before (after a node restart): the first answer also says it is ready.
    let deadline = Instant::now() + START_TIMEOUT;
    let present = loop {
        match cri.image_status(&settings.sandbox_image).await {
            Ok(image) => break image.is_some(),
            Err(ContainerdError::Cri { status, .. })
                if status.message().contains("not initialized") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => return Err(e),
        }
    };
    if present || settings.sandbox_image != pause::IMAGE {
        return Ok(());
    }
    let ctr =
        which("ctr").ok_or_else(|| ContainerdError::NotInstalled("no `ctr` on PATH".into()))?;
    let archive = settings.dir.join("pause.tar");
    let bytes = pause::image_archive().map_err(|e| ContainerdError::SandboxImage(e.to_string()))?;
    std::fs::write(&archive, bytes).map_err(|source| ContainerdError::Io {
        path: archive.clone(),
        source,
    })?;
    let out = Command::new(ctr)
        .arg("--address")
        .arg(settings.socket())
        // The namespace the CRI plugin keeps its images in.
        .args(["--namespace", "k8s.io", "images", "import"])
        .arg(&archive)
        .output()
        .await
        .map_err(|source| ContainerdError::Io {
            path: archive.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(ContainerdError::SandboxImage(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// Starts containerd and waits until its socket accepts connections.
async fn spawn(binary: &Path, settings: &Settings) -> Result<Child, ContainerdError> {
    let log_path = settings.log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|source| ContainerdError::Io {
            path: log_path.clone(),
            source,
        })?;
    let log_err = log.try_clone().map_err(|source| ContainerdError::Io {
        path: log_path.clone(),
        source,
    })?;
    let socket = settings.socket();
    // A socket file left by a containerd that was killed would look like a live one.
    let _ = std::fs::remove_file(&socket);
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(settings.dir.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| ContainerdError::Io {
        path: binary.to_path_buf(),
        source,
    })?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ContainerdError::Exited {
                status: status.to_string(),
                log: log_path,
            });
        }
        if Instant::now() > deadline {
            return Err(ContainerdError::NotServing {
                socket,
                seconds: START_TIMEOUT.as_secs(),
                log: log_path,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Restarts containerd whenever it exits, until told to stop.
async fn supervise(
    binary: PathBuf,
    settings: Settings,
    mut child: Child,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(?status, log = %settings.log().display(), "containerd exited; starting it again");
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = &mut stopped => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    match spawn(&binary, &settings).await {
                        Ok(new) => {
                            child = new;
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "containerd did not start"),
                    }
                }
            }
            _ = &mut stopped => {
                // SIGTERM lets containerd close its stores cleanly; its shims, and with
                // them the containers, stay.
                if let Some(pid) = child.id().and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
                if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                return;
            }
        }
    }
}

/// The containerd started with `config`, if one runs (found in /proc).
pub fn running(config: &Path) -> Option<rustix::process::Pid> {
    let config = config.to_string_lossy();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_containerd = args
                .first()
                .is_some_and(|a| a.ends_with(b"/containerd") || *a == b"containerd");
            let has_config = args
                .windows(2)
                .any(|w| w[0] == b"--config" && w[1] == config.as_bytes());
            (is_containerd && has_config)
                .then(|| rustix::process::Pid::from_raw(pid))
                .flatten()
        })
}

/// SIGTERM, then SIGKILL if the process is still there after `grace`.
pub async fn stop_process(pid: rustix::process::Pid, grace: Duration) {
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + grace;
    let alive = || Path::new(&format!("/proc/{}", pid.as_raw_nonzero())).exists();
    while alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if alive() {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

fn which(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(binary))
        .find(|p| p.is_file())
}
