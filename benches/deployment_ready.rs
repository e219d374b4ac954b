//! A Deployment of many WASI replicas, end to end: the time from creating the Deployment
//! to its `readyReplicas` reaching `replicas` (what `kubectl rollout status` waits for),
//! through the ReplicaSet controller, the scheduler and the node agent of a real
//! `wkube server` (the bench profile's build) on loopback. For context, the same number of
//! bare pods created by the client (64 creates in flight) until all are Ready.
//!
//! The server runs with `--max-pods` above the pods in play. Usage:
//! `cargo bench --bench deployment_ready [-- REPLICAS]` (default 500). Three
//! rounds each; medians are printed. `WKUBE_BENCH_BIN` runs another build of `wkube`.

use std::time::{Duration, Instant};

mod support;
use support::{ms, wait_node_ready, Server};

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

const ROUNDS: usize = 3;
const IN_FLIGHT: usize = 64;
const POLL: Duration = Duration::from_millis(100);
/// Bound on any single wait (all ready, all gone, the server to start).
const PATIENCE: Duration = Duration::from_secs(300);
/// Bound on the whole run; the server is stopped either way.
const RUN_LIMIT: Duration = Duration::from_secs(1800);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let replicas: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    // Room for every replica and bare pod on the one node (kubelet's default is 110).
    let max_pods = (2 * replicas + 10).to_string();
    let server = Server::start_with(PATIENCE, &["--max-pods", &max_pods])?;
    let result = tokio::time::timeout(RUN_LIMIT, run(&server, replicas)).await;
    server.stop();
    result.map_err(|_| anyhow::anyhow!("the bench took more than {RUN_LIMIT:?}"))?
}

fn template(replicas: usize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bench"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}},
                 "template": {"metadata": {"labels": {"app": "bench"}},
                              "spec": {"containers": [{"name": "ticker", "image": "ticker:bench", "args": ["60000"]}]}}}
    })
}

fn bare_pod(i: usize) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("bare-{i}"), "labels": {"app": "bare"}},
        "spec": {"containers": [{"name": "ticker", "image": "ticker:bench", "args": ["60000"]}]}
    }))
    .expect("a pod")
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Polls until `done` holds, within [`PATIENCE`].
async fn until<F, Fut>(what: &str, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + PATIENCE;
    while !done().await? {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

async fn run(server: &Server, n: usize) -> anyhow::Result<()> {
    server.import("ticker", "ticker:bench")?;
    let client = server.client().await?;
    wait_node_ready(&client, PATIENCE).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let gone = |selector: &'static str| {
        let pods = pods.clone();
        move || {
            let pods = pods.clone();
            async move {
                Ok(pods
                    .list(&ListParams::default().labels(selector))
                    .await?
                    .items
                    .is_empty())
            }
        }
    };

    let (mut deploy, mut bare) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let spec: Deployment = serde_json::from_value(template(n))?;
        let sent = Instant::now();
        deployments.create(&PostParams::default(), &spec).await?;
        until("the deployment to be ready", || async {
            let d = deployments.get("bench").await?;
            let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            Ok(ready as usize == n)
        })
        .await?;
        let took = sent.elapsed();
        println!("round {round}: deployment of {n} ready in {}", ms(took));
        deploy.push(took);
        deployments
            .delete("bench", &DeleteParams::default())
            .await?;
        until("the deployment's pods to go", gone("app=bench")).await?;

        let sent = Instant::now();
        let creates = futures::stream::iter(0..n)
            .map(|i| {
                let pods = pods.clone();
                async move { pods.create(&PostParams::default(), &bare_pod(i)).await }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        for c in creates {
            c?;
        }
        until("the bare pods to be ready", || async {
            let list = pods.list(&ListParams::default().labels("app=bare")).await?;
            Ok(list.items.iter().filter(|p| ready(p)).count() == n)
        })
        .await?;
        let took = sent.elapsed();
        println!("round {round}: {n} bare pods ready in {}", ms(took));
        bare.push(took);
        pods.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=bare"),
        )
        .await?;
        until("the bare pods to go", gone("app=bare")).await?;
    }
    deploy.sort();
    bare.sort();
    let (d, b) = (deploy[ROUNDS / 2], bare[ROUNDS / 2]);
    println!("median: deployment of {n} replicas ready in {}", ms(d));
    println!(
        "median: {n} bare pods ({IN_FLIGHT} creates in flight) ready in {}",
        ms(b)
    );
    println!(
        "ratio deployment / bare pods: {:.2}",
        d.as_secs_f64() / b.as_secs_f64()
    );
    Ok(())
}
