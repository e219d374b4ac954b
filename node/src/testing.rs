//! Test helpers for this crate's tests and other crates' (the pod worker, end-to-end
//! tests): virtual mount contents, and the guests built by `guests/build.sh`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::vfs::{Dir, File, Snapshot};

/// The content of a virtual mount holding `(path, content, mode)` files.
///
/// # Panics
/// If two files share a path.
pub fn snapshot(files: &[(&str, &str, u32)]) -> Arc<Snapshot> {
    let files = files.iter().map(|(path, content, mode)| {
        let file = File {
            data: content.as_bytes().to_vec().into(),
            mode: *mode,
        };
        (path.to_string(), file)
    });
    Snapshot::new(Dir::from_files(files).expect("distinct paths"))
}

/// A guest component in `guests/out/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guest {
    /// Prints `Hello from wkube!`, its args and `GREETING`/`POD_NAME`; exits 0.
    Hello,
    /// Prints `tick N` every second (or every `argv[1]` ms) forever.
    Ticker,
    /// Prints a line to stdout and one to stderr; exits with `argv[1]` (default 1).
    ExitCode,
    /// `env`, `cat FILE...`, `ls DIR`, or `watch DIR KEY...`: prints the environment and
    /// files it sees; `watch` prints `seen K=V ...` on every change, read through one
    /// directory descriptor.
    Confwatch,
}

impl Guest {
    pub const ALL: [Guest; 4] = [
        Guest::Hello,
        Guest::Ticker,
        Guest::ExitCode,
        Guest::Confwatch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Guest::Hello => "hello",
            Guest::Ticker => "ticker",
            Guest::ExitCode => "exit-code",
            Guest::Confwatch => "confwatch",
        }
    }

    pub fn path(self) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../guests/out"))
            .join(format!("{}.wasm", self.name()))
    }

    /// The component's bytes.
    ///
    /// # Panics
    /// If the guest has not been built, with a message saying how to build it.
    pub fn bytes(self) -> Vec<u8> {
        let path = self.path();
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "test guest {} not found at {} ({e}): run guests/build.sh",
                self.name(),
                path.display()
            )
        })
    }
}

/// A registry on loopback (Debian's `docker-registry`) holding `busybox:test`, built from
/// Debian's busybox-static by `scripts/test-images.sh`; stopped when dropped.
pub struct Registry {
    process: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

const TEST_IMAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-images.sh");

impl Registry {
    /// An open registry with its data under `dir`, holding `busybox:test`.
    ///
    /// # Panics
    /// If the registry does not start or the image cannot be built or pushed.
    pub fn start(dir: &std::path::Path) -> Registry {
        let registry = Registry::serve(dir, None);
        registry.push_busybox(dir, None);
        registry
    }

    /// An open registry with its data under `dir`, holding nothing yet.
    ///
    /// # Panics
    /// If the registry does not start.
    pub fn empty(dir: &std::path::Path) -> Registry {
        Registry::serve(dir, None)
    }

    /// A registry that serves only `user` with `password` (htpasswd, bcrypt).
    ///
    /// # Panics
    /// As [`Registry::start`], and if `htpasswd` (apache2-utils) is missing.
    pub fn start_private(dir: &std::path::Path, user: &str, password: &str) -> Registry {
        let registry = Registry::serve(dir, Some((user, password)));
        registry.push_busybox(dir, Some((user, password)));
        registry
    }

    fn serve(dir: &std::path::Path, login: Option<(&str, &str)>) -> Registry {
        use std::process::{Command, Stdio};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let address = format!("127.0.0.1:{port}");
        let mut serve = Command::new("bash");
        serve
            .args([TEST_IMAGES, "serve"])
            .arg(dir.join("registry"))
            .arg(port.to_string());
        if let Some((user, password)) = login {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apt-get install apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.join("htpasswd");
            std::fs::write(&file, out.stdout).expect("write htpasswd");
            serve.arg(file);
        }
        let process = serve
            .stdout(Stdio::null())
            .spawn()
            .expect("docker-registry");
        let registry = Registry { process, address };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        registry
    }

    /// Builds `busybox:test` under `dir` and pushes it here (with `login`, if private).
    fn push_busybox(&self, dir: &std::path::Path, login: Option<(&str, &str)>) {
        let image = dir.join("image");
        let run = |args: &[&str]| {
            let status = std::process::Command::new("bash")
                .arg(TEST_IMAGES)
                .args(args)
                .status()
                .expect("bash");
            assert!(status.success(), "test-images.sh {args:?}");
        };
        let image = image.to_str().expect("a UTF-8 path");
        run(&["build", image]);
        let creds = login.map(|(u, p)| format!("{u}:{p}"));
        let mut push = vec!["push", image, &self.address];
        push.extend(creds.as_deref());
        run(&push);
    }

    /// `busybox:test` in this registry.
    pub fn busybox(&self) -> String {
        format!("{}/busybox:test", self.address)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Removes, however a test ends, what a node's containerd under `dir` (`<data>/containerd`)
/// leaves behind: its pod sandboxes with their containers (they outlive the node process),
/// the containerd itself, and the pod bridge. Drop it after the node process is gone and
/// before its data directory is deleted.
pub struct ContainerdCleanup(pub PathBuf);

/// The containerd shims serving the containerd at `socket` (their `-address`).
fn shims(socket: &std::path::Path) -> Vec<rustix::process::Pid> {
    let socket = socket.to_string_lossy();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let shim = args.first()?.ends_with(b"containerd-shim-runc-v2");
            let ours = args
                .windows(2)
                .any(|w| w[0] == b"-address" && w[1] == socket.as_bytes());
            (shim && ours)
                .then(|| rustix::process::Pid::from_raw(pid))
                .flatten()
        })
        .collect()
}

impl Drop for ContainerdCleanup {
    fn drop(&mut self) {
        use crate::containerd::supervisor;
        let dir = self.0.clone();
        if !dir.exists() {
            return;
        }
        // A thread of its own: this may be dropped inside an async test's runtime.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let socket = dir.join("containerd.sock");
                if let Ok(mut cri) = crate::containerd::connect(&socket).await {
                    if let Ok(sandboxes) = cri.sandboxes().await {
                        for sandbox in sandboxes {
                            let _ = cri.remove_sandbox(&sandbox.id).await;
                        }
                    }
                }
                if let Some(pid) = supervisor::running(&dir.join("config.toml")) {
                    supervisor::stop_process(pid, std::time::Duration::from_secs(10)).await;
                }
                // Shims whose sandbox was removed just before containerd stopped may not
                // have been told to exit; they hold nothing any more.
                for pid in shims(&socket) {
                    supervisor::stop_process(pid, std::time::Duration::from_secs(2)).await;
                }
            });
            let bridge = crate::containerd::network::PodNetwork::for_dir(&dir).bridge;
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &bridge])
                .stderr(std::process::Stdio::null())
                .status();
        });
        let _ = cleanup.join();
    }
}

/// The sandboxes of a node's containerd (whose directory is `containerd_dir`), as
/// `(the pods', the pool's unclaimed)`.
pub async fn sandboxes_by_use(
    cri: &mut crate::containerd::CriClient,
    containerd_dir: &std::path::Path,
) -> Result<(Vec<String>, Vec<String>), crate::containerd::ContainerdError> {
    use crate::containerd::sandbox_pool::{Claims, POOL_LABEL};
    let claims = Claims::of_node(containerd_dir)?;
    let (pool, pods) = (cri.sandboxes().await?.into_iter()).partition::<Vec<_>, _>(|s| {
        s.labels.contains_key(POOL_LABEL) && claims.of_sandbox(&s.id).is_none()
    });
    let ids = |sandboxes: Vec<cri::v1::PodSandbox>| sandboxes.into_iter().map(|s| s.id).collect();
    Ok((ids(pods), ids(pool)))
}
