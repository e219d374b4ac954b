//! Resources (`NodeResourcesFit`): the pod's requests must fit in the node's allocatable
//! minus what its pods already request; the score prefers the least allocated node
//! (`LeastAllocated`, CPU and memory weighted alike).

use super::super::requests::Resources;
use super::super::snapshot::NodeInfo;
use super::{Fit, Unfit, MAX_SCORE};

/// The filter: every shortage is a reason of its own, as Kubernetes lists them.
pub fn filter(requests: Resources, node: &NodeInfo) -> Fit {
    let free = node.allocatable - node.requested;
    let mut reasons = Vec::new();
    if node.pods.len() as i64 + 1 > node.max_pods {
        reasons.push("Too many pods");
    }
    let short = |asked: i64, free: i64| asked > 0 && asked > free;
    if short(requests.milli_cpu, free.milli_cpu) {
        reasons.push("Insufficient cpu");
    }
    if short(requests.memory, free.memory) {
        reasons.push("Insufficient memory");
    }
    if short(requests.ephemeral_storage, free.ephemeral_storage) {
        reasons.push("Insufficient ephemeral-storage");
    }
    if reasons.is_empty() {
        return Ok(());
    }
    Err(Unfit {
        reasons: reasons.into_iter().map(str::to_string).collect(),
        resolvable: true,
    })
}

/// `LeastAllocated`: per resource, the share left free after placing the pod (0..=100),
/// averaged over CPU and memory. Counts requests with the scoring defaults, so pods that
/// ask for nothing still spread.
pub fn least_allocated(non_zero_requests: Resources, node: &NodeInfo) -> i64 {
    let alloc = node.allocatable;
    let used = node.non_zero_requested + non_zero_requests;
    let free_share = |capacity: i64, used: i64| {
        if capacity == 0 || used > capacity {
            0
        } else {
            (capacity - used) * MAX_SCORE / capacity
        }
    };
    (free_share(alloc.milli_cpu, used.milli_cpu) + free_share(alloc.memory, used.memory)) / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::requests::pod_requests;
    use crate::scheduler::snapshot;
    use serde_json::{json, Value};

    fn node(cpu: &str, memory: &str, pods: &str) -> Value {
        json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "10Gi"}}})
    }

    fn pod(name: &str, node: &str, cpu: &str, memory: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"nodeName": node,
               "containers": [{"resources": {"requests": {"cpu": cpu, "memory": memory}}}]}})
    }

    #[test]
    fn filter_table() {
        let existing = [pod("a", "n", "1", "1Gi")];
        let cases: &[(&str, Value, Value, &[&str])] = &[
            (
                "fits",
                node("2", "2Gi", "110"),
                pod("p", "", "1", "1Gi"),
                &[],
            ),
            (
                "cpu short",
                node("2", "2Gi", "110"),
                pod("p", "", "1500m", "1Gi"),
                &["Insufficient cpu"],
            ),
            (
                "memory short",
                node("2", "2Gi", "110"),
                pod("p", "", "1", "2Gi"),
                &["Insufficient memory"],
            ),
            (
                "both short",
                node("1", "1Gi", "110"),
                pod("p", "", "1", "1Gi"),
                &["Insufficient cpu", "Insufficient memory"],
            ),
            (
                "pods full",
                node("8", "8Gi", "1"),
                pod("p", "", "0", "0"),
                &["Too many pods"],
            ),
            (
                "storage short",
                node("8", "8Gi", "110"),
                json!({"spec": {"containers": [{"resources": {"requests": {"ephemeral-storage": "11Gi"}}}]}}),
                &["Insufficient ephemeral-storage"],
            ),
            (
                "nothing asked fits a full node",
                node("1", "1Gi", "110"),
                json!({"spec": {"containers": [{}]}}),
                &[],
            ),
        ];
        for (what, n, p, want) in cases {
            let s = snapshot::of(std::slice::from_ref(n), &existing);
            let info = s.nodes().next().unwrap();
            let got = filter(pod_requests(p), info);
            match got {
                Ok(()) => assert!(want.is_empty(), "{what}"),
                Err(u) => {
                    assert!(u.resolvable);
                    assert_eq!(u.reasons, *want, "{what}");
                }
            }
        }
    }

    #[test]
    fn least_allocated_table() {
        let r = |milli_cpu, memory| Resources {
            milli_cpu,
            memory,
            ephemeral_storage: 0,
        };
        let cases = [
            ("empty node, small pod", vec![], r(1000, 1 << 30), 75),
            (
                "half used",
                vec![pod("a", "n", "2", "2Gi")],
                r(1000, 1 << 30),
                25,
            ),
            (
                "over capacity",
                vec![pod("a", "n", "4", "4Gi")],
                r(1000, 1 << 30),
                0,
            ),
        ];
        for (what, pods, asked, want) in cases {
            let s = snapshot::of(&[node("4", "4Gi", "110")], &pods);
            assert_eq!(
                least_allocated(asked, s.nodes().next().unwrap()),
                want,
                "{what}"
            );
        }
    }
}
