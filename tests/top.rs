//! `kubectl top`: the node serves the resource metrics API itself (no metrics-server),
//! from what it measures of itself, of OCI containers (real containerd, busybox from a
//! registry on loopback) and of WASI guests. Needs what tests/containers.rs needs.

#[macro_use]
mod common;

use std::time::Duration;

use common::{table_rows, Server};
use node::testing::Registry;

/// Long enough for an OCI pull and two samples on a busy machine.
const SHOWN: Duration = Duration::from_secs(90);

/// How much the memory-holding guest and container hold, in MiB.
const HELD_MIB: u64 = 64;
const BUSYBOX_HELD_MIB: u64 = 8;

with_each_kubectl!(top_shows_the_node_and_every_kind_of_container);

/// `kubectl top node` shows this node's usage against its capacity; `kubectl top pod
/// --containers` shows a busy busybox container, a busy WASI guest and a guest holding
/// memory, each with what it uses; a pod with nothing measured is metrics-server's
/// NotFound.
fn top_shows_the_node_and_every_kind_of_container(kubectl: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::start(dir.path());
    let server = Server::start_with(&[
        "--listen",
        "127.0.0.1:0",
        "--node-name",
        "node-1",
        "--insecure-registry",
        &registry.address,
        "--metric-resolution",
        "1s",
    ]);
    server.import("ticker", "ticker:1.0");
    let manifest = format!(
        "{spin}---\n{hold}---\n{busy}---\n{waiting}",
        spin = wasi_pod("spin", "ticker:1.0", &["spin"]),
        hold = wasi_pod("hold", "ticker:1.0", &["hold", &HELD_MIB.to_string()]),
        busy = busybox_pod(&registry.busybox()),
        // An image that is nowhere: the pod never runs.
        waiting = wasi_pod("waiting", "nowhere:1.0", &[]),
    );
    let out = server.kubectl_with_stdin(kubectl, &["apply", "-f", "-"], Some(&manifest));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let nodes = common::wait_for("kubectl top node", SHOWN, || {
        let out = server.kubectl(kubectl, &["top", "node"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    let rows = table_rows(&nodes);
    // 1.27 says CPU% and MEMORY%, 1.33 CPU(%) and MEMORY(%).
    let header: Vec<String> = rows[0].iter().map(|c| c.replace(['(', ')'], "")).collect();
    assert_eq!(
        header,
        ["NAME", "CPUcores", "CPU%", "MEMORYbytes", "MEMORY%"],
        "{nodes}"
    );
    assert_eq!(rows[1][0], "node-1", "{nodes}");
    assert!(millicores(rows[1][1]) > 0, "{nodes}");
    assert!(percent(rows[1][2]) <= 100, "{nodes}");
    assert!(mebibytes(rows[1][3]) > 0, "{nodes}");
    assert!((1..=100).contains(&percent(rows[1][4])), "{nodes}");

    let pods = common::wait_for("every running pod in kubectl top pod", SHOWN, || {
        let out = server.kubectl(kubectl, &["top", "pod", "--containers"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let shown = table_rows(&text)
            .iter()
            .filter(|r| ["spin", "hold", "busy"].contains(&r[0]))
            .count();
        (shown == 3).then_some(text)
    });
    let rows = table_rows(&pods);
    assert_eq!(
        rows[0],
        ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"],
        "{pods}"
    );
    let usage = |pod: &str| {
        let row = rows.iter().find(|r| r[0] == pod).expect("a row");
        (row[1], millicores(row[2]), mebibytes(row[3]))
    };
    let (name, cpu, memory) = usage("spin");
    assert!(name == "spin" && cpu > 0 && memory > 0, "{pods}");
    let (name, _, memory) = usage("hold");
    assert!(name == "hold" && memory >= HELD_MIB, "{pods}");
    let (name, cpu, memory) = usage("busy");
    assert!(
        name == "main" && cpu > 0 && memory >= BUSYBOX_HELD_MIB,
        "{pods}"
    );
    assert!(!pods.contains("waiting"), "{pods}");

    let out = server.kubectl(kubectl, &["top", "pod", "waiting"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Error from server (NotFound): podmetrics.metrics.k8s.io \"default/waiting\" not found"
    );
    let out = server.kubectl(kubectl, &["top", "pod", "nothing"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Error from server (NotFound): pods \"nothing\" not found"
    );
    // Label selectors pick the pods, as for any list.
    let selected = server.kubectl_ok(kubectl, &["top", "pod", "-l", "app=hold"]);
    let names: Vec<&str> = table_rows(&selected)[1..].iter().map(|r| r[0]).collect();
    assert_eq!(names, ["hold"], "{selected}");
}

/// A busybox container that spins, holding a shell variable of [`BUSYBOX_HELD_MIB`]
/// (anonymous memory: its working set).
fn busybox_pod(image: &str) -> String {
    let script =
        format!("x=$(head -c {BUSYBOX_HELD_MIB}m /dev/zero | tr '\\0' a); while :; do :; done");
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: busy\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [\"sh\", \"-c\", {script:?}]\n"
    )
}

fn wasi_pod(name: &str, image: &str, args: &[&str]) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\nspec:\n  runtimeClassName: wasmtime\n  containers:\n  - name: {name}\n    image: {image}\n    args: {args:?}\n"
    )
}

/// kubectl top writes cpu as millicores (`250m`).
fn millicores(cell: &str) -> u64 {
    cell.strip_suffix('m')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not millicores: {cell}"))
}

/// ... and memory as mebibytes (`64Mi`).
fn mebibytes(cell: &str) -> u64 {
    cell.strip_suffix("Mi")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not mebibytes: {cell}"))
}

fn percent(cell: &str) -> u64 {
    cell.strip_suffix('%')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a percentage: {cell}"))
}

/// In a cluster of two members, each serves the metrics of the whole cluster: its own
/// node's, and what the other member's node measured (a guest running there included).
#[test]
fn every_member_answers_for_every_node() {
    let kubectl = common::KUBECTL_VERSIONS[1];
    let resolution = ["--metric-resolution", "1s"];
    let first = Server::start_member_with("node-a", None, &resolution);
    let second = Server::start_member_with("node-b", Some(&first), &resolution);
    first.wait_ready_nodes(kubectl, 2, SHOWN);
    second.import("ticker", "ticker:1.0");
    let pod =
        wasi_pod("spin", "ticker:1.0", &["spin"]).replace("spec:\n", "spec:\n  nodeName: node-b\n");
    let out = first.kubectl_with_stdin(kubectl, &["apply", "-f", "-"], Some(&pod));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for member in [&first, &second] {
        let nodes = common::wait_for("both nodes in kubectl top node", SHOWN, || {
            let out = member.kubectl(kubectl, &["top", "node"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && !text.contains("<unknown>")).then_some(text)
        });
        let names: Vec<&str> = table_rows(&nodes)[1..].iter().map(|r| r[0]).collect();
        assert_eq!(names, ["node-a", "node-b"], "{nodes}");
        let pods = common::wait_for("the guest on node-b in kubectl top pod", SHOWN, || {
            let out = member.kubectl(kubectl, &["top", "pod", "spin"]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        });
        assert!(millicores(table_rows(&pods)[1][1]) > 0, "{pods}");
    }
}
