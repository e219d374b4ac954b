//! DaemonSets on a three-member cluster (every member runs a node), driven by the real
//! kubectl (oldest and newest against the same cluster), with WASI guests as the pods:
//! examples/daemonset.yaml puts one pod on each node; a node tainted NoSchedule gets no new
//! pod but keeps its own, one tainted NoExecute loses it; an image change rolls out node by
//! node; the workload kinds list together.

mod common;

use std::time::Duration;

use common::{table_rows, wait_for, Server, KUBECTL_VERSIONS};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// `(pod node, image)` of every agent pod not being deleted, sorted.
fn placements(server: &Server, version: &str) -> Vec<(String, String)> {
    let out = server.kubectl_ok(version, &["get", "pods", "-l", "app=agent", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).expect("a pod list");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut rows: Vec<(String, String)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
        .map(|p| {
            (
                text(&p["spec"]["nodeName"]),
                text(&p["spec"]["containers"][0]["image"]),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn rollout_status(server: &Server, version: &str) {
    let out = server.kubectl_ok(version, &["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(
        out.contains("daemon set \"agent\" successfully rolled out"),
        "{out}"
    );
}

#[test]
fn daemonset_across_members() {
    let (oldest, newest) = (KUBECTL_VERSIONS[0], KUBECTL_VERSIONS[1]);
    let first = Server::start_member("a", None);
    let b = Server::start_member("b", Some(&first));
    let c = Server::start_member("c", Some(&first));
    for m in [&first, &b, &c] {
        m.import("ticker", "echo:1.0");
        m.import("ticker", "echo:2.0");
    }
    first.wait_ready_nodes(newest, 3, DEADLINE);

    let example = format!("{}/examples/daemonset.yaml", env!("CARGO_MANIFEST_DIR"));
    let out = first.kubectl_ok(oldest, &["apply", "-f", &example]);
    assert_eq!(out.trim(), "daemonset.apps/agent created");
    rollout_status(&first, oldest);
    let one = |image: &str, nodes: &[&str]| -> Vec<(String, String)> {
        nodes
            .iter()
            .map(|n| (n.to_string(), image.to_string()))
            .collect()
    };
    assert_eq!(
        placements(&first, oldest),
        one("echo:1.0", &["a", "b", "c"])
    );

    for version in [oldest, newest] {
        let table = b.kubectl_ok(version, &["get", "ds", "-o", "wide"]);
        let rows = table_rows(&table);
        let header = &rows[0][..];
        assert_eq!(
            header,
            [
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "NODE",
                "SELECTOR",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ],
            "{table}"
        );
        let row = &rows[1];
        assert_eq!(
            row[..7],
            ["agent", "3", "3", "3", "3", "3", "<none>"],
            "{table}"
        );
        let all = b.kubectl_ok(
            version,
            &["get", "deploy,rs,sts,ds,job,cronjob,pods", "-o", "wide"],
        );
        assert!(all.contains("daemonset.apps/agent"), "{all}");
    }

    // A NoSchedule taint the pods do not tolerate keeps new daemon pods off node c, but the
    // one there stays (Kubernetes' shouldContinueRunning); a NoExecute one takes it out.
    c.kubectl_ok(
        newest,
        &["taint", "nodes", "c", "dedicated=infra:NoSchedule"],
    );
    wait_for("c no longer desired", DEADLINE, || {
        let desired = first.jsonpath(newest, &["ds", "agent"], "{.status.desiredNumberScheduled}");
        (desired == "2").then_some(())
    });
    assert_eq!(
        placements(&first, newest),
        one("echo:1.0", &["a", "b", "c"])
    );
    c.kubectl_ok(
        newest,
        &["taint", "nodes", "c", "dedicated=infra:NoExecute"],
    );
    wait_for("no agent on c", DEADLINE, || {
        (placements(&first, newest) == one("echo:1.0", &["a", "b"])).then_some(())
    });

    // A new image, node by node.
    first.kubectl_ok(newest, &["set", "image", "ds/agent", "app=echo:2.0"]);
    rollout_status(&first, newest);
    assert_eq!(placements(&first, newest), one("echo:2.0", &["a", "b"]));
}
