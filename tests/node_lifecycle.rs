//! Node lifecycle on a three-member cluster (every member runs a node), with real processes
//! and the real kubectl: nodes heartbeat through Leases in `kube-node-lease`; a member
//! killed with `kill -9` turns NotReady (Ready Unknown, `NodeStatusUnknown`) with the
//! unreachable taints, its Deployment pods are evicted after their toleration and replaced
//! on the other nodes; restarted, it is Ready again without the taints and finishes the
//! deletion of its evicted pods. Grace period and tolerations are set short by flags.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{table_rows, wait_for, Partition, Server, KUBECTL_VERSIONS};
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
    ready: bool,
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
            ready: p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True"),
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
fn a_killed_follower_turns_not_ready_its_pods_move_and_it_comes_back() {
    kill(Victim::Follower, Then::Restart);
}

/// The controllers move with the raft leadership: the new leader's node lifecycle
/// controller counts the silence afresh and still marks the dead leader's node. The
/// operator then deletes the dead node: its member leaves the cluster, its Lease is
/// collected, and its evicted pods (Terminating for good) are deleted by the pod garbage
/// collector after its 40 s quarantine.
#[test]
fn a_killed_leader_turns_not_ready_its_pods_move_and_they_go_with_its_node() {
    kill(Victim::Leader, Then::DeleteNode);
}

/// What becomes of the killed member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Restart,
    DeleteNode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Follower,
    Leader,
}

const NODES: [&str; 3] = ["a", "b", "c"];

/// Three members with short heartbeats and `extra` flags, the guest imported on each.
fn three_members(extra: &[&str]) -> Vec<Server> {
    let mut flags = vec![
        // Renewed every second: well within the grace period, as Kubernetes' 10 s are
        // within its 40 s.
        "--node-lease-duration-seconds",
        "4",
        "--node-monitor-grace-period",
        GRACE,
    ];
    flags.extend_from_slice(extra);
    let first = Server::start_member_with(NODES[0], None, &flags);
    let b = Server::start_member_with(NODES[1], Some(&first), &flags);
    let c = Server::start_member_with(NODES[2], Some(&first), &flags);
    let members = vec![first, b, c];
    for m in &members {
        m.import("ticker", "echo:1.0");
    }
    members
}

/// Applies the Deployment through `api`; its pods once every replica runs, on all three
/// nodes.
fn deploy(api: &Server) -> Vec<PodView> {
    let applied =
        api.kubectl_with_stdin(KUBECTL_VERSIONS[1], &["apply", "-f", "-"], Some(DEPLOYMENT));
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    wait_for(
        "every replica running, on all three nodes",
        DEADLINE,
        || {
            let pods = pods(api);
            let nodes: BTreeSet<&str> = pods.iter().map(|p| p.node.as_str()).collect();
            (pods.len() == REPLICAS && pods.iter().all(|p| p.running) && nodes.len() == 3)
                .then_some(pods)
        },
    )
}

/// Waits until `node` is NotReady with the unreachable taints; returns its Ready reason.
fn wait_unreachable(api: &Server, node: &str) -> String {
    let (status, reason, taints) = wait_for("the node NotReady and unreachable", DEADLINE, || {
        let state = node_state(api, node);
        (state.0 == "NotReady"
            && state
                .2
                .contains(&"node.kubernetes.io/unreachable:NoExecute".to_string()))
        .then_some(state)
    });
    assert_eq!(status, "NotReady");
    assert_eq!(
        taints,
        [
            "node.kubernetes.io/unreachable:NoSchedule",
            "node.kubernetes.io/unreachable:NoExecute"
        ]
    );
    reason
}

fn wait_ready_untainted(api: &Server, node: &str) {
    wait_for("the node Ready without taints", DEADLINE, || {
        let (status, _, taints) = node_state(api, node);
        (status == "Ready" && taints.is_empty()).then_some(())
    });
}

fn kill(victim: Victim, then: Then) {
    let mut members = three_members(&[
        "--default-unreachable-toleration-seconds",
        TOLERATION_SECONDS,
        "--default-not-ready-toleration-seconds",
        TOLERATION_SECONDS,
    ]);
    let leader = common::leader(&members);
    let dead = match victim {
        Victim::Leader => leader,
        Victim::Follower => (0..3).rev().find(|&i| i != leader).expect("a follower"),
    };
    let node = NODES[dead];
    // kubectl talks to a member that stays up.
    let api = &members[(dead + 1) % 3];

    // Every node heartbeats through its Lease, listed with its holder by both kubectls.
    for version in KUBECTL_VERSIONS {
        wait_for("a lease per node", DEADLINE, || {
            let table = api.kubectl_ok(version, &["get", "lease", "-n", "kube-node-lease"]);
            let rows = table_rows(&table);
            let holders: Vec<(&str, &str)> = rows[1..].iter().map(|r| (r[0], r[1])).collect();
            (rows[0] == ["NAME", "HOLDER", "AGE"]
                && holders == [("a", "a"), ("b", "b"), ("c", "c")])
            .then_some(())
        });
    }
    let lease = api.kubectl_ok(
        KUBECTL_VERSIONS[1],
        &["get", "lease", node, "-n", "kube-node-lease", "-o", "json"],
    );
    let lease: Value = serde_json::from_str(&lease).expect("a lease");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 4);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(lease["metadata"]["ownerReferences"][0]["name"], node);

    // Pods on every node, the victim's included.
    let before = deploy(api);
    let on_victim: BTreeSet<String> = before
        .iter()
        .filter(|p| p.node == node)
        .map(|p| p.name.clone())
        .collect();
    let some_victim_pod = on_victim.first().expect("a pod on the victim").clone();
    let tolerations = api.jsonpath(
        KUBECTL_VERSIONS[1],
        &["pod", &some_victim_pod],
        "{.spec.tolerations[*].tolerationSeconds}",
    );
    assert_eq!(tolerations, "3 3", "the configured default tolerations");

    members[dead].kill9();
    let api = &members[(dead + 1) % 3];
    let killed = Instant::now();
    let reason = wait_unreachable(api, node);
    let not_ready_after = killed.elapsed();
    assert_eq!(reason, "NodeStatusUnknown");
    // Silent for the grace period, counted from the last heartbeat (which may predate the
    // kill by up to a renewal interval); the transition time has whole seconds.
    let renewed = api.jsonpath(
        KUBECTL_VERSIONS[1],
        &["lease", node, "-n", "kube-node-lease"],
        "{.spec.renewTime}",
    );
    let unknown_since = api.jsonpath(
        KUBECTL_VERSIONS[1],
        &["node", node],
        "{.status.conditions[?(@.type=='Ready')].lastTransitionTime}",
    );
    let time = |t: &str| chrono::DateTime::parse_from_rfc3339(t).expect("a time");
    let silent = time(&unknown_since) - time(&renewed);
    assert!(
        silent >= chrono::Duration::seconds(4),
        "Unknown {silent} after the last heartbeat, before the grace period of {GRACE}"
    );

    // The victim's pods are evicted (Terminating: nobody can confirm their end) and
    // replaced on the other nodes.
    wait_for("replacements running on the other nodes", DEADLINE, || {
        let pods = pods(api);
        let live: Vec<&PodView> = pods.iter().filter(|p| !p.terminating).collect();
        let evicted = pods
            .iter()
            .filter(|p| on_victim.contains(&p.name) && p.terminating)
            .count();
        (live.len() == REPLICAS
            && live.iter().all(|p| p.running && p.node != node)
            && evicted == on_victim.len())
        .then_some(())
    });
    let moved_after = killed.elapsed();
    eprintln!(
        "{victim:?} killed: node NotReady after {not_ready_after:?}, its pods replaced after {moved_after:?}"
    );
    let ready = api.jsonpath(
        KUBECTL_VERSIONS[1],
        &["pod", &some_victim_pod],
        "{.status.conditions[?(@.type=='Ready')].status}",
    );
    assert_eq!(ready, "False", "pods of an unreachable node are not ready");
    let why = api.jsonpath(
        KUBECTL_VERSIONS[1],
        &["pod", &some_victim_pod],
        "{.status.conditions[?(@.type=='DisruptionTarget')].reason}",
    );
    assert_eq!(why, "DeletionByTaintManager");

    // Only the dead node was ever NotReady: the live ones heartbeat within the grace period.
    let events = api.kubectl_ok(KUBECTL_VERSIONS[1], &["get", "events", "-o", "json"]);
    let events: Value = serde_json::from_str(&events).expect("an event list");
    let not_ready: BTreeSet<&str> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == "NodeNotReady" && e["involvedObject"]["kind"] == "Node")
        .filter_map(|e| e["involvedObject"]["name"].as_str())
        .collect();
    assert_eq!(not_ready, BTreeSet::from([node]));

    match then {
        Then::Restart => {
            // Back: Ready, untainted, and the evicted pods finally gone.
            members[dead].spawn();
            let api = &members[(dead + 1) % 3];
            wait_ready_untainted(api, node);
        }
        Then::DeleteNode => {
            api.kubectl_ok(KUBECTL_VERSIONS[0], &["delete", "node", node]);
            wait_for("the node's lease collected", DEADLINE, || {
                let leases = api.kubectl_ok(
                    KUBECTL_VERSIONS[0],
                    &["get", "lease", "-n", "kube-node-lease", "-o", "name"],
                );
                (!leases.contains(&format!("lease.coordination.k8s.io/{node}"))).then_some(())
            });
        }
    }
    let api = &members[(dead + 1) % 3];
    wait_for(
        "the evicted pods gone",
        DEADLINE + Duration::from_secs(40),
        || {
            let pods = pods(api);
            (pods.len() == REPLICAS && pods.iter().all(|p| !on_victim.contains(&p.name)))
                .then_some(())
        },
    );
}

/// A member cut off from the others (not killed) is NotReady and its pods not ready while
/// the partition lasts; back, its node and its pods are Ready again, and nothing was
/// evicted: the default 300 s toleration outlasts the partition.
#[test]
fn a_cut_off_node_is_not_ready_until_it_is_back_and_keeps_its_pods() {
    let members = three_members(&[]);
    let leader = common::leader(&members);
    let cut = (0..3).rev().find(|&i| i != leader).expect("a follower");
    let (node, api) = (NODES[cut], &members[(cut + 1) % 3]);
    let before = deploy(api);

    let partition = Partition::isolate(members[cut].peer_port());
    assert_eq!(wait_unreachable(api, node), "NodeStatusUnknown");
    wait_for("the cut-off node's pods not ready", DEADLINE, || {
        let pods = pods(api);
        pods.iter()
            .filter(|p| p.node == node)
            .all(|p| !p.ready)
            .then_some(())
    });

    drop(partition);
    wait_ready_untainted(api, node);
    wait_for("every pod ready again, none replaced", DEADLINE, || {
        let pods = pods(api);
        let names = |pods: &[PodView]| pods.iter().map(|p| p.name.clone()).collect::<BTreeSet<_>>();
        (names(&pods) == names(&before) && pods.iter().all(|p| p.ready && !p.terminating))
            .then_some(())
    });
}

/// How many sandboxes of pods (the pool's aside) and containers the containerd of
/// `member` has; `None` while it does not answer (its node is restarting it).
fn sandboxes_and_containers(member: &Server) -> Option<(usize, usize)> {
    let socket = member.data_dir.path().join("containerd/containerd.sock");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let mut cri = node::containerd::connect(&socket).await.ok()?;
            let dir = member.data_dir.path().join("containerd");
            let (pods, _pool) = node::testing::sandboxes_by_use(&mut cri, &dir).await.ok()?;
            let sandboxes = pods.len();
            let request = cri::v1::ListContainersRequest::default();
            let containers = cri.runtime.list_containers(request).await.ok()?;
            Some((sandboxes, containers.into_inner().containers.len()))
        })
}

/// Kubelet's housekeeping: a pod deleted while its node was down (force-deleted through
/// another member) leaves its sandbox and container running in that node's containerd;
/// restarted, the node stops and removes them.
#[test]
fn a_pod_deleted_while_its_node_was_down_leaves_no_sandbox_behind() {
    let mut members = three_members(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("busybox.tar");
    common::registry::busybox_archive(&dir.path().join("layout"), "busybox:1", &archive);
    let imported = members[1]
        .wkube()
        .args(["image", "import"])
        .arg(&archive)
        .output()
        .expect("wkube image import");
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: left\nspec:\n  nodeName: {}\n  containers:\n  - name: main\n    image: busybox:1\n    imagePullPolicy: Never\n    command: [\"sleep\", \"3600\"]\n",
        NODES[1]
    );
    let api = &members[0];
    let applied = api.kubectl_with_stdin(KUBECTL_VERSIONS[1], &["apply", "-f", "-"], Some(&pod));
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    wait_for("the pod to run", DEADLINE, || {
        let phase = api.jsonpath(KUBECTL_VERSIONS[1], &["pod", "left"], "{.status.phase}");
        (phase == "Running").then_some(())
    });
    assert_eq!(sandboxes_and_containers(&members[1]), Some((1, 1)));

    members[1].kill9();
    let api = &members[0];
    api.kubectl_ok(
        KUBECTL_VERSIONS[1],
        &["delete", "pod", "left", "--force", "--grace-period=0"],
    );
    // The container outlives its node process (it belongs to its shim).
    assert_eq!(sandboxes_and_containers(&members[1]), Some((1, 1)));

    members[1].spawn();
    wait_for("the left-behind sandbox to go", DEADLINE, || {
        (sandboxes_and_containers(&members[1]) == Some((0, 0))).then_some(())
    });
}
