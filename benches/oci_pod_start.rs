//! Pod start of an OCI container, against its floor and against a WASI pod (the OCI
//! issue's benchmark), all on one real `wkube server` (release build) and its containerd:
//! - **wkube, busybox**: a pod with one busybox container (`sleep`), image already pulled,
//!   from the create request sent until a watch opened beforehand sees it `Running`. This
//!   is the whole of what a pod needs: the sandbox (pause container, CNI bridge and IP),
//!   then the container.
//! - **`ctr run -d`**: the same image on the same containerd (namespace `k8s.io`), the
//!   process's wall time; it returns once the task has started. It makes no sandbox and
//!   no network beyond loopback: the floor.
//! - **wkube, WASI**: a pod with the `ticker` guest, as above.
//!
//! The three are measured in turn, `PODS` one after another, for `ROUNDS` rounds, so that
//! a busy moment of this shared machine falls on all three alike; figures are over every
//! round. The images are pulled and the component compiled before the first round.
//!
//! Usage: `cargo bench --bench oci_pod_start [-- PODS]` (default 10);
//! `WKUBE_BENCH_CONTAINERD_LOG=FILE` keeps containerd's log. Needs what the OCI
//! tests need: containerd, runc, the CNI plugins, docker-registry and skopeo (the README's
//! test command installs them), and root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::pod_watch::{PodWatch, Seen};
use support::{ms, wait_node_ready, Server, Stats};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use node::testing::{ContainerdCleanup, Registry};

const LABEL: &str = "bench=oci-pod-start";
const ROUNDS: usize = 3;
/// Bound on any single wait (a pod to run, pods to go, the server to start).
const PATIENCE: Duration = Duration::from_secs(120);
/// Bound on the whole run; the server and containerd are stopped either way.
const RUN_LIMIT: Duration = Duration::from_secs(900);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pods: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let images = tempfile::tempdir()?;
    let registry = Registry::start(images.path());
    let server = Server::start_with(PATIENCE, &["--insecure-registry", &registry.address])?;
    let containerd = server.data_dir().join("containerd");
    let result = tokio::time::timeout(RUN_LIMIT, run(&server, &registry, &containerd, pods)).await;
    let data = server.stop();
    if let Some(keep) = std::env::var_os("WKUBE_BENCH_CONTAINERD_LOG") {
        // containerd logs each CRI call and its return: where a pod start's time goes.
        std::fs::copy(containerd.join("containerd.log"), keep)?;
    }
    // containerd and the sandboxes outlive the server; removed before its data directory.
    drop(ContainerdCleanup(containerd));
    drop(data);
    result.map_err(|_| anyhow::anyhow!("the bench took more than {RUN_LIMIT:?}"))?
}

/// The three ways of starting a container, in the order each round runs them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    WkubeOci,
    CtrRun,
    WkubeWasi,
}

impl Way {
    const ALL: [Way; 3] = [Way::WkubeOci, Way::CtrRun, Way::WkubeWasi];

    fn title(self) -> &'static str {
        match self {
            Way::WkubeOci => "wkube, busybox pod: create -> Running",
            Way::CtrRun => "ctr run -d, busybox (the floor)",
            Way::WkubeWasi => "wkube, WASI pod: create -> Running",
        }
    }
}

async fn run(
    server: &Server,
    registry: &Registry,
    containerd: &Path,
    n: usize,
) -> anyhow::Result<()> {
    server.import("ticker", "ticker:bench")?;
    let client = server.client().await?;
    wait_node_ready(&client, PATIENCE).await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut watch = PodWatch::open(&pods, LABEL, PATIENCE).await?;
    let busybox = registry.busybox();
    let ctr = Ctr {
        socket: containerd.join("containerd.sock"),
        image: busybox.clone(),
    };

    // The first busybox pod pulls the image and starts containerd; the first WASI pod
    // compiles the component. Neither is counted.
    for (name, pod) in [
        ("warm-oci", busybox_pod("warm-oci", &busybox)),
        ("warm-wasi", ticker_pod("warm-wasi")),
    ] {
        let sent = Instant::now();
        pods.create(&PostParams::default(), &pod).await?;
        let took = watch.wait_for(name, Seen::Running).await? - sent;
        println!("{name}: {} (pull or compile included)", ms(took));
    }

    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..ROUNDS {
        for (way, samples) in Way::ALL.into_iter().zip(samples.iter_mut()) {
            for i in 0..n {
                let name = format!("r{round}-{i}");
                samples.push(match way {
                    Way::CtrRun => ctr.run(&format!("bench-{name}"))?,
                    Way::WkubeOci => {
                        let name = format!("oci-{name}");
                        start(&pods, &mut watch, &busybox_pod(&name, &busybox)).await?
                    }
                    Way::WkubeWasi => {
                        let name = format!("wasi-{name}");
                        start(&pods, &mut watch, &ticker_pod(&name)).await?
                    }
                });
            }
        }
        delete_all(&pods, &mut watch).await?;
        ctr.remove_all()?;
    }

    println!("{ROUNDS} rounds of {n} starts each way, one at a time:");
    println!("| way | p50 | p99 | max |");
    println!("|---|---|---|---|");
    for (way, samples) in Way::ALL.into_iter().zip(&samples) {
        let s = Stats::of(samples);
        println!(
            "| {} | {} | {} | {} |",
            way.title(),
            ms(s.p50),
            ms(s.p99),
            ms(s.max)
        );
    }
    let p50 = |way: Way| {
        let i = Way::ALL.iter().position(|w| *w == way).expect("a way");
        Stats::of(&samples[i]).p50.as_secs_f64()
    };
    println!(
        "ratios of p50: wkube busybox / ctr run {:.2}x; wkube busybox / wkube WASI {:.1}x",
        p50(Way::WkubeOci) / p50(Way::CtrRun),
        p50(Way::WkubeOci) / p50(Way::WkubeWasi)
    );
    Ok(())
}

/// Creates `pod` and waits for it to run: the time from the create sent to `Running`.
async fn start(pods: &Api<Pod>, watch: &mut PodWatch, pod: &Pod) -> anyhow::Result<Duration> {
    let name = pod.metadata.name.as_deref().expect("a named pod");
    let sent = Instant::now();
    pods.create(&PostParams::default(), pod).await?;
    Ok(watch.wait_for(name, Seen::Running).await? - sent)
}

/// Deletes every bench pod at once and waits until the watch has seen each one go.
async fn delete_all(pods: &Api<Pod>, watch: &mut PodWatch) -> anyhow::Result<()> {
    let selected = ListParams::default().labels(LABEL);
    let names: Vec<String> = pods
        .list(&selected)
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    pods.delete_collection(&DeleteParams::default(), &selected)
        .await?;
    for name in &names {
        watch.wait_for(name, Seen::Deleted).await?;
    }
    Ok(())
}

/// `ctr` on the server's containerd, in the namespace CRI keeps its images in.
struct Ctr {
    socket: PathBuf,
    image: String,
}

impl Ctr {
    fn command(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io"]);
        c
    }

    /// `ctr run -d IMAGE ID sleep 3600`: its wall time.
    fn run(&self, id: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let out = self
            .command()
            .args(["run", "-d", &self.image, id, "sleep", "3600"])
            .output()?;
        let took = started.elapsed();
        anyhow::ensure!(
            out.status.success(),
            "ctr run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(took)
    }

    /// Kills and removes the containers `run` made.
    fn remove_all(&self) -> anyhow::Result<()> {
        let out = self.command().args(["containers", "list", "-q"]).output()?;
        let listed = String::from_utf8_lossy(&out.stdout).into_owned();
        for id in listed.lines().filter(|id| id.starts_with("bench-")) {
            self.command()
                .args(["tasks", "kill", "--signal", "SIGKILL", id])
                .output()?;
            let deadline = Instant::now() + PATIENCE;
            while !self
                .command()
                .args(["tasks", "delete", id])
                .output()?
                .status
                .success()
            {
                anyhow::ensure!(Instant::now() < deadline, "task {id} did not stop");
                std::thread::sleep(Duration::from_millis(20));
            }
            let out = self.command().args(["containers", "delete", id]).output()?;
            anyhow::ensure!(
                out.status.success(),
                "ctr containers delete {id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

fn busybox_pod(name: &str, image: &str) -> Pod {
    let container = Container {
        name: "sleep".into(),
        image: Some(image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["sleep".into(), "3600".into()]),
        ..Default::default()
    };
    labelled(name, container)
}

fn ticker_pod(name: &str) -> Pod {
    let container = Container {
        name: "ticker".into(),
        image: Some("ticker:bench".into()),
        ..Default::default()
    };
    labelled(name, container)
}

/// A pod of one container, with the bench's label; `sleep` as PID 1 ignores SIGTERM, so
/// no grace period keeps the deletions waiting.
fn labelled(name: &str, container: Container) -> Pod {
    let (key, value) = LABEL.split_once('=').expect("label");
    let mut pod = Pod {
        spec: Some(PodSpec {
            containers: vec![container],
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    };
    pod.metadata.name = Some(name.into());
    pod.metadata.labels = Some([(key.to_string(), value.to_string())].into());
    pod
}
