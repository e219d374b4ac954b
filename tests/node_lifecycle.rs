//! Node lifecycle on a three-member cluster (every member runs a node), with real processes
//! and the real kubectl: nodes heartbeat through Leases in `kube-node-lease`; a member
//! killed with `kill -9` turns NotReady (Ready Unknown, `NodeStatusUnknown`) with the
//! unreachable taints, its Deployment pods are evicted after their toleration and replaced
//! on the other nodes; restarted, it is Ready again without the taints and finishes the
//! deletion of its evicted pods. Grace period and tolerations are set short by flags.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{table_rows, wait_for, Server, KUBECTL_VERSIONS};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);
const GRACE: &str = "5s";
const TOLERATION_SECONDS: &str = "3";
const REPLICAS: usize = 6;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 6
  selector:
    matchLabels:
      app: echo
  template:
    metadata:
      labels:
        app: echo
    spec:
      containers:
        - name: app
          image: echo:1.0
"#;

/// A pod as the test sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PodView {
    name: String,
    node: String,
    running: bool,
    terminating: bool,
}

fn pods(server: &Server) -> Vec<PodView> {
    let out = server.kubectl_ok(
        KUBECTL_VERSIONS[1],
        &["get", "pods", "-l", "app=echo", "-o", "json"],
    );
    let list: Value = serde_json::from_str(&out).expect("a pod list");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| PodView {
            name: text(&p["metadata"]["name"]),
            node: text(&p["spec"]["nodeName"]),
            running: p["status"]["phase"] == "Running",
            terminating: p["metadata"].get("deletionTimestamp").is_some(),
        })
        .collect()
}

/// The node's `kubectl get nodes` STATUS, its Ready condition's reason, and its taints as
/// `key:effect`.
fn node_state(server: &Server, node: &str) -> (String, String, Vec<String>) {
    let table = server.kubectl_ok(KUBECTL_VERSIONS[1], &["get", "node", node]);
    let status = table_rows(&table)[1][1].to_string();
    let out = server.kubectl_ok(KUBECTL_VERSIONS[1], &["get", "node", node, "-o", "json"]);
    let n: Value = serde_json::from_str(&out).expect("a node");
    let reason = n["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["reason"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    let taints = n["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or_default(),
                t["effect"].as_str().unwrap_or_default()
            )
        })
        .collect();
    (status, reason, taints)
}

#[test]
fn a_killed_node_turns_not_ready_and_its_pods_move_to_the_others() {
    let flags = [
        "--node-monitor-grace-period",
        GRACE,
        "--default-unreachable-toleration-seconds",
        TOLERATION_SECONDS,
        "--default-not-ready-toleration-seconds",
        TOLERATION_SECONDS,
    ];
    let a = Server::start_member_with("a", None, &flags);
    let b = Server::start_member_with("b", Some(&a), &flags);
    let mut c = Server::start_member_with("c", Some(&a), &flags);
    for m in [&a, &b, &c] {
        m.import("ticker", "echo:1.0");
    }

    // Every node heartbeats through its Lease, listed with its holder by both kubectls.
    for version in KUBECTL_VERSIONS {
        wait_for("a lease per node", DEADLINE, || {
            let table = a.kubectl_ok(version, &["get", "lease", "-n", "kube-node-lease"]);
            let rows = table_rows(&table);
            let holders: Vec<(&str, &str)> = rows[1..].iter().map(|r| (r[0], r[1])).collect();
            (rows[0] == ["NAME", "HOLDER", "AGE"]
                && holders == [("a", "a"), ("b", "b"), ("c", "c")])
            .then_some(())
        });
    }
    let lease = a.kubectl_ok(
        KUBECTL_VERSIONS[1],
        &["get", "lease", "c", "-n", "kube-node-lease", "-o", "json"],
    );
    let lease: Value = serde_json::from_str(&lease).expect("a lease");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");

    // Pods on every node, c included.
    let applied =
        a.kubectl_with_stdin(KUBECTL_VERSIONS[1], &["apply", "-f", "-"], Some(DEPLOYMENT));
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let before = wait_for(
        "every replica running, on all three nodes",
        DEADLINE,
        || {
            let pods = pods(&a);
            let nodes: BTreeSet<&str> = pods.iter().map(|p| p.node.as_str()).collect();
            (pods.len() == REPLICAS && pods.iter().all(|p| p.running) && nodes.len() == 3)
                .then_some(pods)
        },
    );
    let on_c: BTreeSet<String> = before
        .iter()
        .filter(|p| p.node == "c")
        .map(|p| p.name.clone())
        .collect();
    let tolerations = a.jsonpath(
        KUBECTL_VERSIONS[1],
        &["pod", on_c.first().expect("a pod on c")],
        "{.spec.tolerations[*].tolerationSeconds}",
    );
    assert_eq!(tolerations, "3 3", "the configured default tolerations");

    c.kill9();
    let killed = Instant::now();
    let (status, reason, taints) = wait_for("node c NotReady and unreachable", DEADLINE, || {
        let state = node_state(&a, "c");
        (state.0 == "NotReady"
            && state
                .2
                .contains(&"node.kubernetes.io/unreachable:NoExecute".to_string()))
        .then_some(state)
    });
    let not_ready_after = killed.elapsed();
    assert_eq!(status, "NotReady");
    assert_eq!(reason, "NodeStatusUnknown");
    assert_eq!(
        taints,
        [
            "node.kubernetes.io/unreachable:NoSchedule",
            "node.kubernetes.io/unreachable:NoExecute"
        ]
    );
    // Silent for the grace period, counted from the last heartbeat (which may predate the
    // kill by up to a renewal interval); the transition time has whole seconds.
    let renewed = a.jsonpath(
        KUBECTL_VERSIONS[1],
        &["lease", "c", "-n", "kube-node-lease"],
        "{.spec.renewTime}",
    );
    let unknown_since = a.jsonpath(
        KUBECTL_VERSIONS[1],
        &["node", "c"],
        "{.status.conditions[?(@.type=='Ready')].lastTransitionTime}",
    );
    let time = |t: &str| chrono::DateTime::parse_from_rfc3339(t).expect("a time");
    let silent = time(&unknown_since) - time(&renewed);
    assert!(
        silent >= chrono::Duration::seconds(4),
        "Unknown {silent} after the last heartbeat, before the grace period of {GRACE}"
    );

    // c's pods are evicted (Terminating: nobody can confirm their end) and replaced.
    let after = wait_for("replacements running on a and b", DEADLINE, || {
        let pods = pods(&a);
        let live: Vec<&PodView> = pods.iter().filter(|p| !p.terminating).collect();
        let evicted = pods
            .iter()
            .filter(|p| on_c.contains(&p.name) && p.terminating)
            .count();
        (live.len() == REPLICAS
            && live.iter().all(|p| p.running && p.node != "c")
            && evicted == on_c.len())
        .then_some(pods)
    });
    let moved_after = killed.elapsed();
    eprintln!("node NotReady after {not_ready_after:?}, its pods replaced after {moved_after:?}");
    let ready_on_c = a.jsonpath(
        KUBECTL_VERSIONS[1],
        &["pod", on_c.first().expect("a pod on c")],
        "{.status.conditions[?(@.type=='Ready')].status}",
    );
    assert_eq!(
        ready_on_c, "False",
        "pods of an unreachable node are not ready"
    );
    assert!(after.iter().any(|p| !on_c.contains(&p.name)));

    // Back: Ready, untainted, and the evicted pods finally gone.
    c.spawn();
    wait_for("node c Ready without taints", DEADLINE, || {
        let (status, _, taints) = node_state(&a, "c");
        (status == "Ready" && taints.is_empty()).then_some(())
    });
    wait_for("the evicted pods gone", DEADLINE, || {
        let pods = pods(&a);
        (pods.len() == REPLICAS && pods.iter().all(|p| !on_c.contains(&p.name))).then_some(())
    });
}
