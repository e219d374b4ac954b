//! The node's resource metrics (kubelet's role for metrics-server): every `resolution` the
//! [`Sampler`] reads the cumulative CPU time and the memory working set of the node
//! ([`host`]) and of each running container (WASI guests from their meters, OCI containers
//! from CRI `ListContainerStats`). It keeps the last two readings, as metrics-server does,
//! and [`Measured`] serves the CPU rate over the window between them, with the memory of
//! the later one, to the API server's `metrics.k8s.io` (`kubectl top`).
//!
//! A container shows once it has two readings of the same run (a restart starts its
//! counters again); a pod once one of its containers does.

pub mod host;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use control::api::metrics::{NodeUsage, PodUsage, ResourceMetrics, Usage, Window};
use tokio::sync::watch;

use crate::runtime::oci::OciRuntime;
use crate::runtime::wasm::WasmRuntime;
use crate::runtime::ContainerUsage;

/// One reading of everything.
struct Round {
    at: DateTime<Utc>,
    monotonic: Instant,
    node: Option<host::HostUsage>,
    /// By (pod uid, container name).
    containers: HashMap<(String, String), ContainerUsage>,
}

#[derive(Default)]
struct Rounds {
    previous: Option<Round>,
    last: Option<Round>,
}

/// The usage the node measured, served to the API server.
#[derive(Clone)]
pub struct Measured {
    node: String,
    rounds: Arc<Mutex<Rounds>>,
}

pub struct Sampler {
    measured: Measured,
    wasm: WasmRuntime,
    oci: Option<Arc<OciRuntime>>,
    resolution: Duration,
}

impl Sampler {
    pub fn new(
        node: &str,
        wasm: WasmRuntime,
        oci: Option<Arc<OciRuntime>>,
        resolution: Duration,
    ) -> Self {
        Sampler {
            measured: Measured {
                node: node.into(),
                rounds: Arc::default(),
            },
            wasm,
            oci,
            resolution,
        }
    }

    pub fn measured(&self) -> Measured {
        self.measured.clone()
    }

    /// Samples every `resolution` until `shutdown`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.resolution);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !*shutdown.borrow() {
            tokio::select! {
                _ = ticks.tick() => self.sample().await,
                // A closed channel is a shutdown too.
                changed = shutdown.changed() => if changed.is_err() { return },
            }
        }
    }

    async fn sample(&self) {
        let node = host::read()
            .inspect_err(|e| tracing::warn!(error = %e, "reading the node's usage"))
            .ok();
        let mut usage = self.wasm.guests();
        if let Some(oci) = &self.oci {
            // A wedged containerd costs this round its OCI readings, not the sampling.
            match tokio::time::timeout(self.resolution, oci.usage()).await {
                Ok(Ok(containers)) => usage.extend(containers),
                Ok(Err(e)) => tracing::warn!(error = %e, "reading the OCI containers' usage"),
                Err(_) => tracing::warn!("containerd did not report the containers' usage in time"),
            }
        }
        let round = Round {
            at: Utc::now(),
            monotonic: Instant::now(),
            node,
            containers: usage
                .into_iter()
                .map(|u| ((u.pod_uid.clone(), u.name.clone()), u))
                .collect(),
        };
        let mut rounds = self.measured.lock();
        rounds.previous = rounds.last.replace(round);
    }
}

impl Measured {
    fn lock(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last two rounds and the window between them.
    fn with_window<T>(&self, f: impl FnOnce(&Round, &Round, Window) -> T) -> Option<T> {
        let rounds = self.lock();
        let (previous, last) = (rounds.previous.as_ref()?, rounds.last.as_ref()?);
        let window = Window {
            end: last.at,
            length: last.monotonic.duration_since(previous.monotonic),
        };
        Some(f(previous, last, window))
    }
}

/// CPU nanoseconds consumed over `window` as a rate in nanocores; `None` when the
/// counter went backwards (a reset).
fn rate(before: u64, after: u64, window: Duration) -> Option<u64> {
    let consumed = after.checked_sub(before)?;
    let nanos = window.as_nanos();
    (nanos > 0).then(|| (u128::from(consumed) * 1_000_000_000 / nanos) as u64)
}

impl ResourceMetrics for Measured {
    fn nodes(&self) -> Vec<NodeUsage> {
        self.with_window(|previous, last, window| {
            let (before, after) = (previous.node?, last.node?);
            Some(NodeUsage {
                node: self.node.clone(),
                window,
                usage: Usage {
                    cpu_nanocores: rate(before.cpu_ns, after.cpu_ns, window.length)?,
                    memory_bytes: after.memory_bytes,
                },
            })
        })
        .flatten()
        .into_iter()
        .collect()
    }

    fn pods(&self) -> Vec<PodUsage> {
        self.with_window(|previous, last, window| {
            let mut pods: HashMap<&str, PodUsage> = HashMap::new();
            for (key, after) in &last.containers {
                let Some(before) = previous.containers.get(key).filter(|b| b.id == after.id) else {
                    continue;
                };
                let Some(cpu) = rate(before.cpu_ns, after.cpu_ns, window.length) else {
                    continue;
                };
                let pod = pods.entry(&after.pod_uid).or_insert_with(|| PodUsage {
                    pod_uid: after.pod_uid.clone(),
                    window,
                    containers: Vec::new(),
                });
                pod.containers.push((
                    after.name.clone(),
                    Usage {
                        cpu_nanocores: cpu,
                        memory_bytes: after.memory_bytes,
                    },
                ));
            }
            let mut pods: Vec<PodUsage> = pods.into_values().collect();
            for pod in &mut pods {
                pod.containers.sort_by(|a, b| a.0.cmp(&b.0));
            }
            pods
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, name: &str, cpu_ns: u64, memory_bytes: u64) -> ContainerUsage {
        ContainerUsage {
            id: id.into(),
            pod_uid: "pod".into(),
            name: name.into(),
            cpu_ns,
            memory_bytes,
        }
    }

    fn round(start: Instant, after: Duration, containers: Vec<ContainerUsage>) -> Round {
        Round {
            at: Utc::now(),
            monotonic: start + after,
            node: Some(host::HostUsage {
                cpu_ns: after.as_nanos() as u64,
                memory_bytes: 1 << 30,
            }),
            containers: containers
                .into_iter()
                .map(|c| ((c.pod_uid.clone(), c.name.clone()), c))
                .collect(),
        }
    }

    #[test]
    fn rates_come_from_two_readings_of_the_same_run() {
        let start = Instant::now();
        let measured = Measured {
            node: "n".into(),
            rounds: Arc::default(),
        };
        assert!(measured.nodes().is_empty() && measured.pods().is_empty());
        let first = vec![
            container("a-0", "a", 1_000_000_000, 10),
            container("b-0", "b", 0, 20),
        ];
        measured.lock().last = Some(round(start, Duration::ZERO, first));
        assert!(measured.pods().is_empty(), "one reading is no rate");
        let second = vec![
            // Half a core over the two seconds.
            container("a-0", "a", 2_000_000_000, 30),
            // Restarted: its counters started again.
            container("b-1", "b", 5, 20),
            // New since the first round.
            container("c-0", "c", 5, 20),
        ];
        let mut rounds = measured.lock();
        rounds.previous = rounds
            .last
            .replace(round(start, Duration::from_secs(2), second));
        drop(rounds);
        let pods = measured.pods();
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].window.length, Duration::from_secs(2));
        assert_eq!(
            pods[0].containers,
            vec![(
                "a".to_string(),
                Usage {
                    cpu_nanocores: 500_000_000,
                    memory_bytes: 30
                }
            )]
        );
        let nodes = measured.nodes();
        assert_eq!(nodes[0].usage.cpu_nanocores, 1_000_000_000);
        assert_eq!(nodes[0].node, "n");
    }
}
