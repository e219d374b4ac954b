//! The scheduler on a three-member cluster (every member runs a node named after it), driven
//! by the real kubectl (oldest and newest against the same cluster), with WASI guests as
//! the pods: placement by node selector, by taints and tolerations, and by required
//! anti-affinity; pods that fit nowhere stay Pending with Kubernetes' `FailedScheduling`
//! message and are placed once a node changes so they fit.

mod common;

use std::time::Duration;

use common::{wait_for, Server, KUBECTL_VERSIONS};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

fn apply(server: &Server, version: &str, yaml: &str) {
    let out = server.kubectl_with_stdin(version, &["apply", "-f", "-"], Some(yaml));
    assert!(
        out.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pod running the `echo` guest, with `extra` spec lines (indented for `spec:`).
fn pod(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: app\n    image: echo:1.0\n{extra}"
    )
}

fn node_of(server: &Server, version: &str, pod: &str) -> String {
    wait_for(&format!("{pod} bound"), DEADLINE, || {
        let node = server.jsonpath(version, &["pod", pod], "{.spec.nodeName}");
        (!node.is_empty()).then_some(node)
    })
}

/// Waits for the pod's `PodScheduled=False` message to be `message`, and checks that the
/// pod is Pending, unbound, and that `kubectl describe` shows the event.
fn assert_unschedulable(server: &Server, version: &str, pod: &str, message: &str) {
    wait_for(&format!("{pod} reported unschedulable"), DEADLINE, || {
        let cond = server.jsonpath(
            version,
            &["pod", pod],
            "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        );
        (cond == message).then_some(())
    });
    let state = server.jsonpath(
        version,
        &["pod", pod],
        "{.status.phase}/{.spec.nodeName}/{.status.conditions[?(@.type==\"PodScheduled\")].reason}",
    );
    assert_eq!(state, "Pending//Unschedulable");
    let described = server.kubectl_ok(version, &["describe", "pod", pod]);
    let event = described
        .lines()
        .find(|l| l.contains("FailedScheduling"))
        .unwrap_or_else(|| panic!("no FailedScheduling event:\n{described}"));
    let cells: Vec<&str> = event.split_whitespace().collect();
    assert_eq!(cells[0], "Warning", "{event}");
    assert!(event.contains("default-scheduler"), "{event}");
    assert!(event.trim_end().ends_with(message), "{event}");
}

#[test]
fn placement_by_selector_taints_and_anti_affinity() {
    let (oldest, newest) = (KUBECTL_VERSIONS[0], KUBECTL_VERSIONS[1]);
    let first = Server::start_member("a", None);
    let b = Server::start_member("b", Some(&first));
    let c = Server::start_member("c", Some(&first));
    for m in [&first, &b, &c] {
        m.import("ticker", "echo:1.0");
    }
    first.wait_ready_nodes(newest, 3, DEADLINE);

    // Node selector: the labelled node, and none until a node gets the label.
    first.kubectl_ok(oldest, &["label", "node", "b", "disk=ssd"]);
    apply(
        &first,
        oldest,
        &pod("on-ssd", "  nodeSelector:\n    disk: ssd\n"),
    );
    assert_eq!(node_of(&first, oldest, "on-ssd"), "b");
    apply(
        &first,
        oldest,
        &pod("on-nvme", "  nodeSelector:\n    disk: nvme\n"),
    );
    assert_unschedulable(
        &first,
        oldest,
        "on-nvme",
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );
    b.kubectl_ok(newest, &["label", "node", "c", "disk=nvme"]);
    assert_eq!(node_of(&first, newest, "on-nvme"), "c");

    // Taints: an untainted node for pods without tolerations; a tainted one for a pod
    // tolerating it; none for a pod bound to a tainted node without the toleration, until
    // the taint goes.
    for node in ["a", "c"] {
        first.kubectl_ok(
            newest,
            &["taint", "node", node, "dedicated=infra:NoSchedule"],
        );
    }
    apply(&first, newest, &pod("plain", ""));
    assert_eq!(node_of(&first, newest, "plain"), "b");
    let tolerant = "  nodeSelector:\n    kubernetes.io/hostname: a\n  tolerations:\n  - key: dedicated\n    operator: Equal\n    value: infra\n    effect: NoSchedule\n";
    apply(&first, newest, &pod("tolerant", tolerant));
    assert_eq!(node_of(&first, newest, "tolerant"), "a");
    apply(
        &first,
        oldest,
        &pod(
            "intolerant",
            "  nodeSelector:\n    kubernetes.io/hostname: a\n",
        ),
    );
    assert_unschedulable(
        &first,
        oldest,
        "intolerant",
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 node(s) had untolerated taint {dedicated: infra}. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );
    for node in ["a", "c"] {
        c.kubectl_ok(
            oldest,
            &["taint", "node", node, "dedicated=infra:NoSchedule-"],
        );
    }
    assert_eq!(node_of(&first, oldest, "intolerant"), "a");

    // Required anti-affinity on the hostname: three replicas on three nodes, a fourth
    // nowhere.
    let deployment = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: spread
spec:
  replicas: 3
  selector:
    matchLabels:
      app: spread
  template:
    metadata:
      labels:
        app: spread
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector:
              matchLabels:
                app: spread
            topologyKey: kubernetes.io/hostname
      containers:
      - name: app
        image: echo:1.0
"#;
    apply(&first, newest, deployment);
    let spread_pods = |version: &str| -> Vec<(String, String)> {
        let out = first.kubectl_ok(version, &["get", "pods", "-l", "app=spread", "-o", "json"]);
        let list: Value = serde_json::from_str(&out).expect("a pod list");
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| (text(&p["metadata"]["name"]), text(&p["spec"]["nodeName"])))
            .collect()
    };
    let nodes = wait_for("three replicas bound", DEADLINE, || {
        let pods = spread_pods(newest);
        let mut nodes: Vec<String> = pods
            .into_iter()
            .map(|(_, n)| n)
            .filter(|n| !n.is_empty())
            .collect();
        nodes.sort();
        (nodes.len() == 3).then_some(nodes)
    });
    assert_eq!(nodes, ["a", "b", "c"]);
    first.kubectl_ok(oldest, &["scale", "deployment", "spread", "--replicas=4"]);
    let pending = wait_for("a fourth replica", DEADLINE, || {
        let pods = spread_pods(oldest);
        (pods.len() == 4).then_some(())?;
        pods.into_iter().find(|(_, n)| n.is_empty()).map(|(p, _)| p)
    });
    for version in [oldest, newest] {
        assert_unschedulable(
            &first,
            version,
            &pending,
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
        );
    }
}
