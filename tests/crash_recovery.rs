//! `kill -9` of the server while pods run, then restart: every object is back unchanged
//! and `Always` pods run again.

mod common;

use std::time::Duration;

use common::Server;

#[test]
fn kill9_and_restart_keeps_objects_and_reruns_always_pods() {
    let mut server = Server::start();
    server.import("ticker", "ticker:1.0");
    let manifest = format!("{}/examples/ticker-pod.yaml", env!("CARGO_MANIFEST_DIR"));
    server.kubectl_ok("1.33", &["apply", "-f", &manifest]);
    server.kubectl_ok(
        "1.33",
        &["create", "configmap", "keep", "--from-literal=k=v"],
    );
    common::wait_for("ticker to run", Duration::from_secs(30), || {
        (server.jsonpath("1.33", &["pod", "ticker"], "{.status.phase}") == "Running").then_some(())
    });
    let snapshot = |s: &Server| {
        let cm = s.kubectl_ok("1.33", &["get", "configmap", "keep", "-o", "jsonpath={.metadata.uid} {.metadata.resourceVersion} {.metadata.creationTimestamp} {.data.k}"]);
        let pod = s.kubectl_ok("1.33", &["get", "pod", "ticker", "-o", "jsonpath={.metadata.uid} {.metadata.creationTimestamp} {.spec.containers[0].image}"]);
        (cm, pod)
    };
    let before = snapshot(&server);

    server.kill9();
    server.spawn();

    assert_eq!(snapshot(&server), before);
    // The Always pod runs again after the restart and writes its log anew.
    common::wait_for("ticker to run again", Duration::from_secs(30), || {
        let running = server.jsonpath(
            "1.33",
            &["pod", "ticker"],
            "{.status.containerStatuses[0].state.running.startedAt}",
        );
        let restarts = server.jsonpath(
            "1.33",
            &["pod", "ticker"],
            "{.status.containerStatuses[0].restartCount}",
        );
        (!running.is_empty() && restarts == "1").then_some(())
    });
    common::wait_for("new ticks in the log", Duration::from_secs(10), || {
        server
            .kubectl_ok("1.33", &["logs", "ticker"])
            .contains("tick 1")
            .then_some(())
    });
}
