//! What a pod asks of a node (`resource.PodRequests`) and what a node offers
//! (`status.allocatable`), in integer units: milli-CPU and bytes.

use serde_json::Value;

use crate::obj;
use crate::validation::parse_quantity;

/// The CPU a container without a CPU request counts for when scoring (kube-scheduler's
/// `DefaultMilliCPURequest`), so empty pods still spread.
const DEFAULT_MILLI_CPU: i64 = 100;
/// The memory counted likewise (`DefaultMemoryRequest`, 200 MiB).
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler accounts for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

impl Resources {
    /// Reads a `ResourceList` (`{"cpu": "500m", "memory": "1Gi"}`); unparseable amounts
    /// count as zero (validation refuses them on write).
    pub fn from_list(list: &Value) -> Resources {
        let amount = |name: &str, scale: f64| {
            obj::get_str(list, &[name])
                .and_then(|q| parse_quantity(q).ok())
                .map_or(0, |v| (v * scale).ceil() as i64)
        };
        Resources {
            milli_cpu: amount("cpu", 1000.0),
            memory: amount("memory", 1.0),
            ephemeral_storage: amount("ephemeral-storage", 1.0),
        }
    }

    fn max(self, o: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.max(o.milli_cpu),
            memory: self.memory.max(o.memory),
            ephemeral_storage: self.ephemeral_storage.max(o.ephemeral_storage),
        }
    }

    /// Zero CPU and memory replaced by the scoring defaults (`GetNonzeroRequests`).
    fn non_zero(self) -> Resources {
        Resources {
            milli_cpu: if self.milli_cpu == 0 {
                DEFAULT_MILLI_CPU
            } else {
                self.milli_cpu
            },
            memory: if self.memory == 0 {
                DEFAULT_MEMORY
            } else {
                self.memory
            },
            ..self
        }
    }
}

impl std::ops::Add for Resources {
    type Output = Resources;

    fn add(self, o: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu + o.milli_cpu,
            memory: self.memory + o.memory,
            ephemeral_storage: self.ephemeral_storage + o.ephemeral_storage,
        }
    }
}

impl std::ops::Sub for Resources {
    type Output = Resources;

    fn sub(self, o: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu - o.milli_cpu,
            memory: self.memory - o.memory,
            ephemeral_storage: self.ephemeral_storage - o.ephemeral_storage,
        }
    }
}

/// Sums `f` over the regular containers, then applies Kubernetes' init container rule:
/// init containers run one at a time before the others, so the pod needs the larger of
/// their sum and the biggest init container; restartable (sidecar) init containers keep
/// running, so they add to both; `spec.overhead` comes on top.
fn pod_total(pod: &Value, f: impl Fn(&Value) -> Resources) -> Resources {
    let mut total = obj::array(pod, &["spec", "containers"])
        .iter()
        .fold(Resources::default(), |sum, c| sum + f(c));
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for init in obj::array(pod, &["spec", "initContainers"]) {
        if obj::str_or_empty(init, &["restartPolicy"]) == "Always" {
            sidecars = sidecars + f(init);
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(sidecars + f(init));
        }
    }
    total = (total + sidecars).max(init_peak);
    let overhead = obj::get(pod, &["spec", "overhead"]).map(Resources::from_list);
    total + overhead.unwrap_or_default()
}

fn container_requests(c: &Value) -> Resources {
    Resources::from_list(obj::get(c, &["resources", "requests"]).unwrap_or(&Value::Null))
}

/// The pod's requests, for the fit filter.
pub fn pod_requests(pod: &Value) -> Resources {
    pod_total(pod, container_requests)
}

/// The pod's requests with the per-container scoring defaults, for least-allocated.
pub fn pod_non_zero_requests(pod: &Value) -> Resources {
    pod_total(pod, |c| container_requests(c).non_zero())
}

/// A node's `status.allocatable`, and how many pods it takes (`pods`, 0 when absent).
pub fn allocatable(node: &Value) -> (Resources, i64) {
    let list = obj::get(node, &["status", "allocatable"]).unwrap_or(&Value::Null);
    let pods = obj::get_str(list, &["pods"])
        .and_then(|q| parse_quantity(q).ok())
        .map_or(0, |v| v as i64);
    (Resources::from_list(list), pods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(milli_cpu: i64, memory: i64) -> Resources {
        Resources {
            milli_cpu,
            memory,
            ephemeral_storage: 0,
        }
    }

    #[test]
    fn pod_requests_table() {
        let c =
            |cpu: &str, mem: &str| json!({"resources": {"requests": {"cpu": cpu, "memory": mem}}});
        let cases = [
            (
                "nothing asked",
                json!({"spec": {"containers": [{}]}}),
                res(0, 0),
                res(100, 200 << 20),
            ),
            (
                "containers add up",
                json!({"spec": {"containers": [c("100m", "1Ki"), c("1", "1Ki")]}}),
                res(1100, 2048),
                res(1100, 2048),
            ),
            (
                "a big init container wins",
                json!({"spec": {"containers": [c("100m", "1Ki")], "initContainers": [c("2", "1"), c("500m", "1")]}}),
                res(2000, 1024),
                res(2000, 1024),
            ),
            (
                "sidecars add to the rest",
                json!({"spec": {"containers": [c("1", "1Ki")], "initContainers": [{"restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}}]}}),
                res(1500, 1024),
                res(1500, 1024 + (200 << 20)),
            ),
            (
                "overhead on top",
                json!({"spec": {"containers": [c("1", "1Ki")], "overhead": {"cpu": "250m"}}}),
                res(1250, 1024),
                res(1250, 1024),
            ),
        ];
        for (what, pod, requests, non_zero) in cases {
            assert_eq!(pod_requests(&pod), requests, "{what}");
            assert_eq!(pod_non_zero_requests(&pod), non_zero, "{what}");
        }
    }

    #[test]
    fn allocatable_reads_the_node_status() {
        let node = json!({"status": {"allocatable": {"cpu": "2", "memory": "1Mi", "pods": "110", "ephemeral-storage": "1k"}}});
        let (r, pods) = allocatable(&node);
        assert_eq!(
            (r.milli_cpu, r.memory, r.ephemeral_storage, pods),
            (2000, 1 << 20, 1000, 110)
        );
        assert_eq!(allocatable(&json!({})), (Resources::default(), 0));
    }
}
