//! ConfigMap update propagation, end to end: from the API write to a running WASI guest
//! reading the new content of its mounted ConfigMap.
//!
//! A real `wkube server` (this package's bench build) with the `confwatch` guest imported.
//! One pod mounts ConfigMap `bench` (keys `a`, `b`, `c`) and runs `confwatch watch /cfg a b
//! c`: it reads the three files through one directory descriptor every 5 ms and prints
//! `seen a=vN b=vN c=vN` when they change. The bench then patches the ConfigMap `N` times
//! through the Kubernetes REST API (`kube` client, merge patch), one at a time: each patch
//! is timed from the request being sent to the response, and to the guest's line for that
//! version appearing in its container log file (read directly, every 0.2 ms). Every line
//! is also checked for a torn read (keys of two versions).
//!
//! The guest's 5 ms polling is part of the figure (on average 2.5 ms of it). The anchor is
//! Kubernetes' own propagation for mounted ConfigMaps: the kubelet sync period (1 min by
//! default) plus its ConfigMap cache delay, "up to about a minute" (published, not measured).
//!
//! Usage: `cargo bench --bench config_propagation [-- N]` (default 100).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

mod support;
use support::{ms, wait_node_ready, Server, Stats};

/// Bound on any single wait (the server, the pod, one version to show).
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    let server = Server::start(PATIENCE)?;
    let result = run(&server, n).await;
    server.stop();
    result
}

fn data(n: u32) -> serde_json::Value {
    let v = format!("v{n}");
    json!({"a": v, "b": v, "c": v})
}

async fn run(server: &Server, n: u32) -> anyhow::Result<()> {
    server.import("confwatch", "confwatch:bench")?;
    let client = server.client().await?;
    wait_node_ready(&client, PATIENCE).await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let cm = serde_json::from_value(json!({"metadata": {"name": "bench"}, "data": data(0)}))?;
    config_maps.create(&PostParams::default(), &cm).await?;
    let pod = serde_json::from_value(json!({
        "metadata": {"name": "reader"},
        "spec": {
            "containers": [{
                "name": "app", "image": "confwatch:bench",
                "command": ["confwatch", "watch", "/cfg", "a", "b", "c"],
                "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]
            }],
            "volumes": [{"name": "cfg", "configMap": {"name": "bench"}}]
        }
    }))?;
    let uid = pods
        .create(&PostParams::default(), &pod)
        .await?
        .metadata
        .uid
        .unwrap_or_default();
    let mut log = Log {
        path: node::logs::container_log_path(
            &server.data_dir().join("logs"),
            "default",
            "reader",
            &uid,
            "app",
            0,
        ),
        read: 0,
    };
    log.wait_for(0)?;

    let mut acked = Vec::new();
    let mut visible = Vec::new();
    let params = PatchParams::default();
    let started = Instant::now();
    for v in 1..=n {
        let patch = Patch::Merge(json!({"data": data(v)}));
        let sent = Instant::now();
        config_maps.patch("bench", &params, &patch).await?;
        acked.push(sent.elapsed());
        log.wait_for(v)?;
        visible.push(sent.elapsed());
    }
    let total = started.elapsed();
    println!("{n} updates, one at a time, in {}; no torn read", ms(total));
    println!("| from patch sent to | p50 | p99 | max |");
    println!("|---|---|---|---|");
    for (what, samples) in [
        ("patch response (the write committed)", &acked),
        ("**the guest read the new version**", &visible),
    ] {
        let s = Stats::of(samples);
        println!("| {what} | {} | {} | {} |", ms(s.p50), ms(s.p99), ms(s.max));
    }
    Ok(())
}

/// The guest's container log, read as it grows.
struct Log {
    path: PathBuf,
    read: usize,
}

impl Log {
    /// Waits until the guest reports version `v`; fails on a torn read.
    fn wait_for(&mut self, v: u32) -> anyhow::Result<()> {
        let want = format!("seen a=v{v} b=v{v} c=v{v}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            for line in self.new_lines() {
                let Some((_, seen)) = line.split_once(" seen ") else {
                    continue;
                };
                let values: Vec<&str> = seen.split(' ').map(|kv| &kv[2..]).collect();
                anyhow::ensure!(values.iter().all(|x| *x == values[0]), "torn read: {line}");
                if line.ends_with(&want) {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no {want:?} in {}",
                self.path.display()
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Complete lines appended since the last call.
    fn new_lines(&mut self) -> Vec<String> {
        let text = read(&self.path);
        let end = text[self.read..]
            .rfind('\n')
            .map_or(self.read, |i| self.read + i + 1);
        let lines = text[self.read..end].lines().map(str::to_string).collect();
        self.read = end;
        lines
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
