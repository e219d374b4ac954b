//! What the end-to-end benches share: a real `wkube server` process with its data in a
//! temporary directory, a `kube` client for it, and percentile figures.

#![allow(dead_code)] // each bench uses a different part

pub mod pod_watch;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The `wkube` binary built with this bench, or `WKUBE_BENCH_BIN` to compare builds.
pub fn wkube_bin() -> PathBuf {
    std::env::var_os("WKUBE_BENCH_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_wkube").into(), PathBuf::from)
}

/// A `wkube server` process with its data in a temporary directory.
pub struct Server {
    data: tempfile::TempDir,
    child: Child,
}

impl Server {
    /// Starts the server; returns once it has written its kubeconfig (within `patience`).
    pub fn start(patience: Duration) -> anyhow::Result<Self> {
        Server::start_with(patience, &[])
    }

    /// As [`Server::start`], with more `wkube server` arguments.
    pub fn start_with(patience: Duration, extra: &[&str]) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        // Kept where asked, for profiling with `WKUBE_LOG` (see BENCHMARKS.md).
        let log_path = std::env::var_os("WKUBE_BENCH_SERVER_LOG")
            .map_or_else(|| data.path().join("server.log"), PathBuf::from);
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(wkube_bin())
            .args(["server", "--listen", "127.0.0.1:0", "--node-name", "bench"])
            .args(extra)
            .arg("--data-dir")
            .arg(data.path())
            .env(
                "WKUBE_LOG",
                std::env::var("WKUBE_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let server = Server { data, child };
        let deadline = Instant::now() + patience;
        while !server.kubeconfig().exists() {
            anyhow::ensure!(Instant::now() < deadline, "the server wrote no kubeconfig");
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("server log: {}", log_path.display());
        Ok(server)
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data.path().join("kubeconfig")
    }

    /// A client for the server, from the kubeconfig it wrote.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let kubeconfig = Kubeconfig::read_from(self.kubeconfig())?;
        let config =
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// `wkube image import guests/out/<guest>.wasm <reference>`.
    pub fn import(&self, guest: &str, reference: &str) -> anyhow::Result<()> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("guests/out")
            .join(format!("{guest}.wasm"));
        let status = Command::new(wkube_bin())
            .args(["image", "import"])
            .arg(&path)
            .arg(reference)
            .arg("--data-dir")
            .arg(self.data.path())
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "importing {}: {status}", path.display());
        Ok(())
    }

    /// SIGTERM, then SIGKILL if the server is not gone within the bound. Returns the data
    /// directory, deleted when dropped: what the server left running (containerd) can be
    /// stopped first.
    pub fn stop(self) -> tempfile::TempDir {
        let Server { data, mut child } = self;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return data;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("the server ignored SIGTERM for 10 s; killing it");
        let _ = child.kill();
        let _ = child.wait();
        data
    }
}

pub async fn wait_node_ready(client: &Client, patience: Duration) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + patience;
    loop {
        let ready = nodes
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|n| {
                let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
                conditions
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
        if ready {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "no Ready node");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct Stats {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Stats {
    /// Nearest-rank percentiles.
    pub fn of(samples: &[Duration]) -> Stats {
        let mut v = samples.to_vec();
        v.sort();
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Stats {
            p50: rank(0.50),
            p99: rank(0.99),
            max: *v.last().expect("samples"),
        }
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
