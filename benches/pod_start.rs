//! Pod start latency, end to end: a real `wkube server` (the bench profile's build of this
//! package's binary) on loopback with a temporary data dir, the `ticker` guest imported,
//! and pods created through the Kubernetes REST API with the `kube` client from the
//! kubeconfig the server writes.
//!
//! For every pod the client records when the create request was sent, when the create
//! returned, and when a watch opened beforehand delivered the pod bound to a node and then
//! with `status.phase: Running`. Two phases of `PODS` pods each:
//! - **serial**: one pod at a time, the next created once the previous is Running: the
//!   latency of one start on an otherwise idle node;
//! - **burst**: `CONCURRENCY` creates in flight at once: latency under queueing, and
//!   throughput.
//!
//! Context: `kubectl apply -f -` of single pods (process wall time, and apply -> Running),
//! and how long deleting each phase's pods takes. The anchor is Kubernetes' pod startup
//! SLO: p99 <= 5 s from creation to Running, for pods with pre-pulled images.
//!
//! Usage: `cargo bench --bench pod_start [-- PODS]` (default 200). The server logs at
//! `WKUBE_LOG` (default `warn`) into `WKUBE_BENCH_SERVER_LOG` (default: the data dir);
//! `WKUBE_BENCH_BIN` runs another build of `wkube` (before/after comparisons).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::pod_watch::{PodWatch, Seen};
use support::{ms, wait_node_ready, Server, Stats};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

const LABEL: &str = "bench=pod-start";
const CONCURRENCY: usize = 10;
const KUBECTL_PODS: usize = 20;
/// Bound on any single wait (a pod to run, pods to go, the server to start or stop).
const PATIENCE: Duration = Duration::from_secs(120);
/// Bound on the whole run; the server is stopped either way.
const RUN_LIMIT: Duration = Duration::from_secs(900);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pods_per_phase: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let server = Server::start(PATIENCE)?;
    let result = tokio::time::timeout(RUN_LIMIT, run(&server, pods_per_phase)).await;
    server.stop();
    result.map_err(|_| anyhow::anyhow!("the bench took more than {RUN_LIMIT:?}"))?
}

async fn run(server: &Server, n: usize) -> anyhow::Result<()> {
    server.import("ticker", "ticker:bench")?;
    let client = server.client().await?;
    wait_node_ready(&client, PATIENCE).await?;

    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut watch = PodWatch::open(&pods, LABEL, PATIENCE).await?;

    // The first start compiles the component (then cached on disk): reported apart.
    let sent = Instant::now();
    pods.create(&PostParams::default(), &ticker_pod("warmup"))
        .await?;
    let warmup = watch.wait_for("warmup", Seen::Running).await? - sent;
    println!("first pod (compiles the component): {}", ms(warmup));

    let serial = serial_phase(&pods, &mut watch, n).await?;
    serial.print(&format!("serial: {n} pods, one at a time"));
    let deleted = delete_all(&pods, &mut watch).await?;
    println!("deleting {} pods until gone: {}", n + 1, ms(deleted));

    let burst = burst_phase(&pods, &mut watch, n).await?;
    burst.print(&format!("burst: {n} pods, {CONCURRENCY} creates in flight"));
    let deleted = delete_all(&pods, &mut watch).await?;
    println!("deleting {n} pods until gone: {}", ms(deleted));

    kubectl_phase(server, &mut watch).await?;
    delete_all(&pods, &mut watch).await?;
    Ok(())
}

/// Per-pod client-side timings of one phase.
#[derive(Default)]
struct Phase {
    create: Vec<Duration>,
    bound: Vec<Duration>,
    running: Vec<Duration>,
    total: Duration,
}

impl Phase {
    fn print(&self, title: &str) {
        println!("{title}; wall time {}", ms(self.total));
        println!(
            "  throughput: {:.0} pods/s",
            self.running.len() as f64 / self.total.as_secs_f64()
        );
        println!("  | from create sent to | p50 | p99 | max |");
        println!("  |---|---|---|---|");
        for (what, v) in [
            ("create response", &self.create),
            ("watch: bound to node", &self.bound),
            ("watch: phase Running", &self.running),
        ] {
            let s = Stats::of(v);
            println!(
                "  | {what} | {} | {} | {} |",
                ms(s.p50),
                ms(s.p99),
                ms(s.max)
            );
        }
    }
}

async fn serial_phase(pods: &Api<Pod>, watch: &mut PodWatch, n: usize) -> anyhow::Result<Phase> {
    let mut phase = Phase::default();
    let start = Instant::now();
    for i in 0..n {
        let name = format!("serial-{i}");
        let sent = Instant::now();
        pods.create(&PostParams::default(), &ticker_pod(&name))
            .await?;
        phase.create.push(sent.elapsed());
        phase
            .running
            .push(watch.wait_for(&name, Seen::Running).await? - sent);
        phase.bound.push(watch.seen(&name, Seen::Bound)? - sent);
    }
    phase.total = start.elapsed();
    Ok(phase)
}

async fn burst_phase(pods: &Api<Pod>, watch: &mut PodWatch, n: usize) -> anyhow::Result<Phase> {
    let start = Instant::now();
    let created: Vec<(String, Instant, Duration)> = futures::stream::iter(0..n)
        .map(|i| async move {
            let name = format!("burst-{i}");
            let sent = Instant::now();
            pods.create(&PostParams::default(), &ticker_pod(&name))
                .await?;
            anyhow::Ok((name, sent, sent.elapsed()))
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut phase = Phase::default();
    for (name, sent, create) in created {
        phase.create.push(create);
        phase
            .running
            .push(watch.wait_for(&name, Seen::Running).await? - sent);
        phase.bound.push(watch.seen(&name, Seen::Bound)? - sent);
    }
    phase.total = start.elapsed();
    Ok(phase)
}

/// `kubectl apply` of single pods, one at a time: what a user at a terminal sees.
async fn kubectl_phase(server: &Server, watch: &mut PodWatch) -> anyhow::Result<()> {
    let cache = tempfile::tempdir()?;
    let mut process = Vec::new();
    let mut running = Vec::new();
    for i in 0..KUBECTL_PODS {
        let name = format!("kubectl-{i}");
        let manifest = serde_json::to_string(&ticker_pod(&name))?;
        let sent = Instant::now();
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", server.kubeconfig())
            .arg("--cache-dir")
            .arg(cache.path())
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), manifest.as_bytes())?;
        let status = tokio::task::spawn_blocking(move || child.wait()).await??;
        anyhow::ensure!(status.success(), "kubectl apply failed: {status}");
        process.push(sent.elapsed());
        running.push(watch.wait_for(&name, Seen::Running).await? - sent);
    }
    let (p, r) = (Stats::of(&process), Stats::of(&running));
    println!("kubectl apply -f - ({KUBECTL_PODS} pods, one at a time, discovery cached after the first):");
    println!(
        "  kubectl process: p50 {} max {}; apply -> Running: p50 {} max {}",
        ms(p.p50),
        ms(p.max),
        ms(r.p50),
        ms(r.max)
    );
    Ok(())
}

/// Deletes every bench pod and waits until the watch has seen each one go.
async fn delete_all(pods: &Api<Pod>, watch: &mut PodWatch) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let names: Vec<String> = pods
        .list(&ListParams::default().labels(LABEL))
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(LABEL),
    )
    .await?;
    for name in &names {
        watch.wait_for(name, Seen::Deleted).await?;
    }
    Ok(start.elapsed())
}

fn ticker_pod(name: &str) -> Pod {
    let (key, value) = LABEL.split_once('=').expect("label");
    let mut pod = Pod {
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "ticker".into(),
                image: Some("ticker:bench".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    pod.metadata.name = Some(name.into());
    pod.metadata.labels = Some([(key.to_string(), value.to_string())].into());
    pod
}
