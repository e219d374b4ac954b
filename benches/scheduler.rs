//! Scheduler throughput through the real API server, in the manner of kube-scheduler's
//! `scheduler_perf`: `NODES` fake nodes (Node objects, Ready, no agent behind them) exist
//! first, then `PODS` pods are created as fast as the API takes them (`IN_FLIGHT` creates at
//! once) and a pod watch, opened before, times when every pod is bound.
//!
//! Each run starts a fresh `wkube server` (the bench profile's build). Its own node is
//! cordoned so only the fake nodes count. Figures per run: how long the creates took, the
//! time from the first create to the last pod bound, and pods bound per second over that
//! time, which counts the creates too (three writes per pod: create, bind, `Scheduled`
//! event), so it is a lower bound on what the scheduler alone does; the lag of the last
//! bind behind the last create shows whether the scheduler kept up.
//!
//! Variants: **plain** (pods ask for nothing special), and **anti-affinity**: pods come in
//! sets of `NODES`, each pod with required anti-affinity against its own set on
//! `kubernetes.io/hostname`, so every set spreads one pod per node.
//!
//! Usage: `cargo bench --bench scheduler [-- [RUNS] [plain|anti-affinity]]` (default 3 runs
//! of each variant; the median is printed). `WKUBE_BENCH_BIN` runs another build of `wkube`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

mod support;
use support::{ms, wait_node_ready, Server};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::sync::mpsc;

const PODS: usize = 5000;
const NODES: usize = 100;
const IN_FLIGHT: usize = 64;
const LABEL: &str = "bench=scheduler";
/// Bound on any single wait.
const PATIENCE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Variant {
    Plain,
    AntiAffinity,
}

/// One run's figures.
struct Run {
    creates: Duration,
    all_bound: Duration,
}

impl Run {
    fn rate(&self) -> f64 {
        PODS as f64 / self.all_bound.as_secs_f64()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(3);
    let variants = [
        ("plain", Variant::Plain),
        ("anti-affinity", Variant::AntiAffinity),
    ];
    let chosen = variants
        .into_iter()
        .filter(|(name, _)| {
            !args
                .iter()
                .any(|a| a.starts_with('p') || a.starts_with('a'))
                || args.iter().any(|a| a == name)
        })
        .map(|(_, v)| v);
    for variant in chosen {
        let mut rates = Vec::new();
        for n in 1..=runs {
            let server = Server::start(PATIENCE)?;
            let result = tokio::time::timeout(PATIENCE, measure(&server, variant)).await;
            server.stop();
            let run = result.map_err(|_| anyhow::anyhow!("the run took too long"))??;
            println!(
                "{variant:?} run {n}: {PODS} pods onto {NODES} nodes: creates took {}, all bound {} after the first create ({} after the last): {:.0} pods/s (load average {})",
                ms(run.creates),
                ms(run.all_bound),
                ms(run.all_bound.saturating_sub(run.creates)),
                run.rate(),
                load_average()
            );
            rates.push(run.rate());
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "{variant:?}: median {:.0} pods/s over {runs} runs",
            rates[rates.len() / 2]
        );
    }
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn pod(i: usize, variant: Variant) -> anyhow::Result<Pod> {
    let set = format!("s{}", i / NODES);
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("p{i}"), "labels": {"bench": "scheduler", "set": set}},
        "spec": {"containers": [{"name": "app", "image": "ticker:bench"}]},
    });
    if variant == Variant::AntiAffinity {
        pod["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"set": set}}, "topologyKey": "kubernetes.io/hostname"}]}});
    }
    Ok(serde_json::from_value(pod)?)
}

/// A Ready node with room for 110 pods, created with its status so that it is usable from
/// its first version.
fn fake_node(i: usize) -> anyhow::Result<Node> {
    let name = format!("fake-{i}");
    let resources = json!({"cpu": "64", "memory": "256Gi", "pods": "110"});
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": format!("zone-{i}")}},
        "status": {"allocatable": resources, "capacity": resources, "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake node",
             "lastHeartbeatTime": now, "lastTransitionTime": now}]},
    });
    Ok(serde_json::from_value(node)?)
}

/// Reports, as the API shows them, how many bench pods are bound and when. A watch the
/// server ends (a slow reader is cut off) is resumed by a list and a new watch from it.
fn watch_bound(pods: Api<Pod>) -> mpsc::UnboundedReceiver<anyhow::Result<(usize, Instant)>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut bound = HashSet::new();
        loop {
            if let Err(e) = follow(&pods, &mut bound, &tx).await {
                let _ = tx.send(Err(e));
                return;
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

/// One list, then one watch until it ends.
async fn follow(
    pods: &Api<Pod>,
    bound: &mut HashSet<String>,
    tx: &mpsc::UnboundedSender<anyhow::Result<(usize, Instant)>>,
) -> anyhow::Result<()> {
    let is_bound = |p: &Pod| p.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    let list = pods.list(&ListParams::default().labels(LABEL)).await?;
    let at = Instant::now();
    bound.extend(
        list.items
            .iter()
            .filter(|p| is_bound(p))
            .map(|p| p.metadata.name.clone().unwrap_or_default()),
    );
    let _ = tx.send(Ok((bound.len(), at)));
    let from = list.metadata.resource_version.unwrap_or_default();
    let params = WatchParams::default().labels(LABEL).timeout(3600);
    let mut stream = std::pin::pin!(pods.watch(&params, &from).await?);
    while let Some(event) = stream.try_next().await? {
        let pod = match event {
            WatchEvent::Added(p) | WatchEvent::Modified(p) => p,
            // 410 Gone: this reader fell behind; list again.
            WatchEvent::Error(e) if e.code == 410 => return Ok(()),
            WatchEvent::Error(e) => anyhow::bail!("watch error: {e}"),
            _ => continue,
        };
        let at = Instant::now();
        if is_bound(&pod) {
            bound.insert(pod.metadata.name.unwrap_or_default());
        }
        if tx.send(Ok((bound.len(), at))).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// One run: nodes first, then the pods, timed until all are bound.
async fn measure(server: &Server, variant: Variant) -> anyhow::Result<Run> {
    let client = server.client().await?;
    wait_node_ready(&client, PATIENCE).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let cordon = json!({"spec": {"unschedulable": true}});
    nodes
        .patch("bench", &PatchParams::default(), &Patch::Merge(&cordon))
        .await?;
    futures::stream::iter(0..NODES)
        .map(|i| {
            let nodes = nodes.clone();
            async move {
                nodes.create(&PostParams::default(), &fake_node(i)?).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut bound = watch_bound(pods.clone());
    let start = Instant::now();
    futures::stream::iter(0..PODS)
        .map(|i| {
            let pods = pods.clone();
            async move {
                pods.create(&PostParams::default(), &pod(i, variant)?)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    let creates = start.elapsed();
    let end = loop {
        let next = tokio::time::timeout(PATIENCE, bound.recv()).await;
        let (count, at) = next
            .map_err(|_| anyhow::anyhow!("no pod bound for {PATIENCE:?}"))?
            .ok_or_else(|| anyhow::anyhow!("the pod watch stopped"))??;
        if count == PODS {
            break at;
        }
    };
    Ok(Run {
        creates,
        all_bound: end - start,
    })
}
